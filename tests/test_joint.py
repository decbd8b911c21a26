"""The joint-recommendation state machine (workflow/joint.py): its table and its refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot.services import Services
from storage.db import transaction
from storage.models import JointRecommendation, Person, RoleGrant
from tests import test_review
from tests.test_sources import Chat, _joint
from tests.world import World
from workflow import joint
from workflow.errors import NotPermitted, WrongState
from workflow.joint import TRANSITIONS, JointRefused, JointState
from workflow.lifecycle import Role
from workflow.permissions import load_actor
from workflow.rooms import get_room

world, services = test_review.world, test_review.services


def test_the_table_answers_only_while_waiting_and_only_as_a_member() -> None:
    for action in ("confirm", "decline"):
        assert TRANSITIONS[action].sources == {JointState.WAITING}
        assert TRANSITIONS[action].roles == {Role.MEMBER}
    assert TRANSITIONS["confirm"].target == JointState.WAITING
    assert TRANSITIONS["decline"].target == JointState.DECLINED
    # Opening and failing are the outcome of the last answer, nobody's button.
    assert TRANSITIONS["open"].roles == TRANSITIONS["fail"].roles == frozenset()


async def pending(world: World, *names: str) -> tuple[str, list[int]]:
    """A recommendation by V1's member to co-signers ``names`` (members of V1)."""
    async with transaction(world.sessions) as session:
        people = [Person(display_name=name) for name in names]
        session.add_all(people)
        await session.flush()
        ids = [p.id for p in people if p.id is not None]
        session.add_all(
            RoleGrant(person_id=pid, room_id=world.rooms["V1"], role=Role.MEMBER) for pid in ids
        )
        room = await get_room(session, "V1")
        assert room is not None
        draft = {"title": "河道清淤", "description": "夏季异味明显", "cosigners": ids}
        row = joint.start(
            session,
            room=room,
            initiator_id=world.person("V1", Role.MEMBER),
            draft=draft,
            now=world.clock.now(),
        )
    return row.token, ids


async def answer(world: World, token: str, person_id: int, agrees: bool = True) -> joint.Answered:
    async with transaction(world.sessions) as session:
        row = await joint.find(session, token)
        actor = await load_actor(session, person_id)
        return await joint.answer(session, row, actor, agrees, world.clock.now())


async def refused(world: World, token: str, person_id: int, agrees: bool = True) -> JointRefused:
    with pytest.raises(JointRefused) as caught:
        await answer(world, token, person_id, agrees)
    return caught.value


async def row_of(world: World, token: str) -> JointRecommendation:
    async with world.sessions() as session:
        return (
            await session.exec(
                select(JointRecommendation).where(JointRecommendation.token == token)
            )
        ).one()


async def test_an_answer_after_the_time_is_up_is_refused(world: World) -> None:
    token, (first, _) = await pending(world, "王委员", "李委员")
    world.clock.set(world.clock.now() + timedelta(days=joint.ANSWER_DAYS))
    refusal = await refused(world, token, first)
    assert (refusal.reason, refusal.code) == ("expired", WrongState.code)
    assert refusal.message == "这个联名邀请已过期，议题没有提交。"
    row = await row_of(world, token)
    assert row.data["answers"][str(first)] is None and row.status == JointState.WAITING
    # Lapsed is one notion: the reminder's query finds exactly what the check refuses.
    assert joint.is_lapsed(row, world.clock.now())
    async with world.sessions() as session:
        found = (
            await session.exec(select(JointRecommendation).where(joint.lapsed(world.clock.now())))
        ).all()
    assert [r.token for r in found] == [token]


async def test_a_non_member_cannot_answer(world: World) -> None:
    token, (first, _) = await pending(world, "王委员", "李委员")
    outsider = world.person("V1", Role.CONVENER)
    refusal = await refused(world, token, outsider)
    assert (refusal.reason, refusal.code) == ("not_addressed", NotPermitted.code)
    async with transaction(world.sessions) as session:  # addressed, but no longer a member
        for grant in await session.exec(select(RoleGrant).where(RoleGrant.person_id == first)):
            grant.revoked_at = world.clock.now()
    refusal = await refused(world, token, first)
    assert (refusal.reason, refusal.code) == ("not_permitted", NotPermitted.code)
    assert refusal.message == "您已不是该议事室的政协委员，不能联名。"
    assert (await row_of(world, token)).data["answers"] == {
        str(pid): None for pid in (await row_of(world, token)).data["draft"]["cosigners"]
    }


async def test_a_second_answer_is_refused_and_a_declined_one_ends_it(world: World) -> None:
    token, (first, second) = await pending(world, "王委员", "李委员")
    answered = await answer(world, token, first)
    assert (answered.transition.action, answered.waiting, answered.complete) == (
        "confirm",
        1,
        False,
    )
    assert (await refused(world, token, first, agrees=False)).reason == "used"
    assert (await answer(world, token, second, agrees=False)).declined
    row = await row_of(world, token)
    assert row.status == JointState.DECLINED
    assert row.data["answers"] == {str(first): joint.YES, str(second): joint.NO}
    # Nothing moves a recommendation out of a final state, not even its own outcome.
    with pytest.raises(JointRefused, match="已经结束"):
        joint.opened(row, 1, world.clock.now())


async def test_a_garbled_answer_is_forged(world: World) -> None:
    token, [first] = await pending(world, "王委员")
    async with transaction(world.sessions) as session:
        row = await joint.find(session, token)
        actor = await load_actor(session, first)
        with pytest.raises(JointRefused) as caught:
            await joint.answer(session, row, actor, None, world.clock.now())
    assert caught.value.reason == "forged"


async def test_the_chat_says_an_answer_after_the_lapse_is_too_late(
    world: World, services: Services
) -> None:
    _, _, yes, _ = await _joint(world, services)
    world.clock.set(world.clock.now() + timedelta(days=8))
    assert await Chat(services, "王委员").press(yes) == "这个联名邀请已过期，议题没有提交。"
