"""Who holds a role in a room and which chat reaches a person (workflow/people.py), the one
place the notices, the reminder sweep, the overdue listing and role administration ask."""

from __future__ import annotations

from datetime import timedelta

from storage.db import transaction
from storage.models import ChannelIdentity, Person, RoleGrant
from tests import test_review
from tests.world import World
from workflow.lifecycle import Role
from workflow.people import ChatAddress, Grants, chat_address, chat_addresses, holders

world = test_review.world


async def test_holders_count_grants_in_force_once_each(world: World) -> None:
    room = world.rooms["V1"]
    async with transaction(world.sessions) as session:
        people = [Person(display_name=name) for name in ("甲", "乙", "丙")]
        session.add_all(people)
        await session.flush()
        a, b, c = (p.id for p in people)
        assert a is not None and b is not None and c is not None
        session.add_all(
            [
                RoleGrant(person_id=b, room_id=room, role=Role.OPERATOR),
                RoleGrant(person_id=b, room_id=room, role=Role.CONVENER),  # twice: once
                RoleGrant(person_id=a, room_id=room, role=Role.OPERATOR),
                RoleGrant(
                    person_id=c, room_id=room, role=Role.CONVENER, revoked_at=world.clock.now()
                ),
            ]
        )
    convener, operator = world.person("V1", Role.CONVENER), world.person("V1", Role.OPERATOR)
    roles = (Role.CONVENER, Role.OPERATOR)
    async with world.sessions() as session:
        found = await holders(session, room, roles)
        grants = await Grants.load(session)
    assert found == sorted({a, b, convener, operator})  # by person id; the revoked one not at all
    # The sweep's in-memory view: the same people, by role then id, each in their first role.
    assert grants.holders(room, roles) == [
        *((pid, str(Role.CONVENER)) for pid in sorted({b, convener})),
        *((pid, str(Role.OPERATOR)) for pid in sorted({a, operator})),
    ]


async def test_a_person_is_reached_where_they_last_wrote_else_on_the_newest_chat(
    world: World,
) -> None:
    now = world.clock.now()
    async with transaction(world.sessions) as session:
        wrote, silent, nobody = Person(display_name="写过"), Person(display_name="没写过"), Person()
        session.add_all([wrote, silent, nobody])
        await session.flush()
        assert wrote.id is not None and silent.id is not None and nobody.id is not None
        session.add_all(
            [
                ChannelIdentity(
                    person_id=wrote.id, channel="wechat", external_id="o1", last_inbound_at=now
                ),
                ChannelIdentity(
                    person_id=wrote.id,
                    channel="telegram",
                    external_id="1",
                    last_inbound_at=now - timedelta(days=1),
                ),
                ChannelIdentity(person_id=wrote.id, channel="console", external_id="w"),
                ChannelIdentity(person_id=silent.id, channel="wechat", external_id="o2"),
                ChannelIdentity(person_id=silent.id, channel="telegram", external_id="2"),
            ]
        )
    async with world.sessions() as session:
        many = await chat_addresses(session, [wrote.id, silent.id, nobody.id])
        one = [await chat_address(session, pid) for pid in (wrote.id, silent.id, nobody.id)]
    assert many == {wrote.id: ChatAddress("wechat", "o1"), silent.id: ("telegram", "2")}
    assert one == [many[wrote.id], many[silent.id], None]
