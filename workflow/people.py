"""Who holds a role in a room, and which chat address reaches a person: asked here only.

A role grant counts from when it is made until it is revoked (grants have no expiry; an
invite's expiry ends the invite, not the role). The notices (who is told of an event, who
gets a reminder), the overdue listing and the role administration all ask this module.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Integer
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from storage.db import select_columns
from storage.models import ChannelIdentity, Person, RoleGrant, Room
from storage.sql import among
from workflow.clock import CHINA
from workflow.lifecycle import Role
from workflow.rooms import RoomInfo, RoomTree

#: Where supervision comes from, in order of preference: the district's CPPCC room, and for
#: rooms that have no district above them (city-level rooms), the city's.
SUPERVISING_LEVELS = ("district", "city")


def in_force() -> ColumnElement[bool]:
    """The condition of a grant that counts now."""
    return col(RoleGrant.revoked_at).is_(None)


def _grant_rows(
    room_id: int | None = None, roles: Collection[str] | None = None
) -> Select[int, str, int]:
    """(room, role, person) of the grants in force, optionally of one room and some roles."""
    query = select(RoleGrant.room_id, RoleGrant.role, RoleGrant.person_id).where(in_force())
    if room_id is not None:
        query = query.where(RoleGrant.room_id == room_id)
    if roles is not None:
        query = query.where(col(RoleGrant.role).in_(sorted(str(r) for r in roles)))
    return query


async def holders(session: AsyncSession, room_id: int, roles: Iterable[str]) -> list[int]:
    """The people holding any of ``roles`` in room ``room_id``, each once, by person id."""
    rows = await session.exec(_grant_rows(room_id, list(roles)))
    return sorted({person_id for _, _, person_id in rows})


async def role_holders(
    session: AsyncSession, room_id: int, roles: Iterable[str]
) -> list[tuple[int, str]]:
    """(person id, role) of the grants in force of ``roles`` in room ``room_id``."""
    rows = await session.exec(_grant_rows(room_id, list(roles)))
    return sorted({(person_id, role) for _, role, person_id in rows})


async def cosigner_candidates(
    session: AsyncSession, room_id: int, person_id: int
) -> list[tuple[int, str | None]]:
    """Whom ``person_id`` may ask to co-sign a 委员荐题 in room ``room_id``: the room's other
    members who have a chat, by id, with their names."""
    rows = await session.exec(
        select(Person.id, Person.display_name)
        .join(RoleGrant, col(RoleGrant.person_id) == Person.id)
        .where(
            RoleGrant.room_id == room_id,
            RoleGrant.role == Role.MEMBER,
            in_force(),
            Person.id != person_id,
            col(Person.id).in_(select(ChannelIdentity.person_id)),
        )
        .order_by(col(Person.id))
        .distinct()
    )
    return [(pid, name) for pid, name in rows if pid is not None]


class Grants:
    """Live (not revoked) role grants: who holds which role in which room."""

    def __init__(self, rows: Iterable[tuple[int, str, int]]) -> None:
        self._holders: dict[tuple[int, str], list[int]] = {}
        self._supervising: dict[int, tuple[RoomInfo | None, list[int]]] = {}
        for room_id, role, person_id in sorted(rows):
            people = self._holders.setdefault((room_id, role), [])
            if person_id not in people:
                people.append(person_id)

    @classmethod
    async def load(cls, session: AsyncSession) -> Grants:
        return cls(await session.exec(_grant_rows()))

    def holders(self, room_id: int, roles: Iterable[str]) -> list[tuple[int, str]]:
        """(person, role) pairs, each person once (in their first role), by role then id."""
        found: dict[int, str] = {}
        for role in sorted(roles):
            for person_id in self._holders.get((room_id, role), ()):
                found.setdefault(person_id, role)
        return list(found.items())

    def supervisors(self, tree: RoomTree, room_id: int) -> tuple[RoomInfo | None, list[int]]:
        """The supervising room above (or at) ``room_id`` and its supervisors.

        The nearest room of level "district" on the chain that has supervisors; failing
        that, the nearest "city" room that has. A town's own supervisor grant does not
        count: supervision is the district CPPCC's job (000 §6, §17).
        """
        if room_id not in self._supervising:  # asked once per overdue topic: remember
            self._supervising[room_id] = self._find_supervisors(tree, room_id)
        return self._supervising[room_id]

    def _find_supervisors(self, tree: RoomTree, room_id: int) -> tuple[RoomInfo | None, list[int]]:
        chain = tree.chain(room_id)
        for level in SUPERVISING_LEVELS:
            for room in chain:
                if room.level == level:
                    people = [pid for pid, _ in self.holders(room.id, (Role.SUPERVISOR,))]
                    if people:
                        return room, people
        return None, []


async def live_grant(
    session: AsyncSession, person_id: int, room_id: int, role: str
) -> RoleGrant | None:
    """The person's grant of ``role`` in the room, if one is in force (the oldest)."""
    found = await session.exec(
        select(RoleGrant)
        .where(
            RoleGrant.person_id == person_id,
            RoleGrant.room_id == room_id,
            RoleGrant.role == role,
            in_force(),
        )
        .order_by(col(RoleGrant.id))
        .limit(1)
    )
    return found.first()


@dataclass(frozen=True)
class GrantView:
    grant: RoleGrant
    person: Person
    room: Room
    identities: list[ChannelIdentity] = field(default_factory=list)
    granted_by: Person | None = None


async def live_grants(session: AsyncSession, room_id: int | None = None) -> list[GrantView]:
    """Grants in force (optionally in one room), by room code, role and grant id."""
    query = (
        select(RoleGrant, Person, Room)
        .join(Person, col(Person.id) == RoleGrant.person_id)
        .join(Room, col(Room.id) == RoleGrant.room_id)
        .where(in_force())
        .order_by(col(Room.code), col(RoleGrant.role), col(RoleGrant.id))
    )
    if room_id is not None:
        query = query.where(RoleGrant.room_id == room_id)
    rows = list(await session.exec(query))
    people = {person.id for _, person, _ in rows} | {
        grant.granted_by_id for grant, _, _ in rows if grant.granted_by_id is not None
    }
    identities: dict[int, list[ChannelIdentity]] = {}
    grantors: dict[int, Person] = {}
    if people:
        for identity in await session.exec(
            select(ChannelIdentity)
            .where(col(ChannelIdentity.person_id).in_(people))
            .order_by(col(ChannelIdentity.id))
        ):
            identities.setdefault(identity.person_id, []).append(identity)
        for person in await session.exec(select(Person).where(col(Person.id).in_(people))):
            assert person.id is not None
            grantors[person.id] = person
    return [
        GrantView(
            grant=grant,
            person=person,
            room=room,
            identities=identities.get(grant.person_id, []),
            granted_by=grantors.get(grant.granted_by_id) if grant.granted_by_id else None,
        )
        for grant, person, room in rows
    ]


# -- reaching a person ----------------------------------------------------------------------


class ChatAddress(NamedTuple):
    """Where a message to a person goes: a channel and the person's id on it."""

    channel: str
    external_id: str


async def chat_address(session: AsyncSession, person_id: int) -> ChatAddress | None:
    """The chat that reaches ``person_id``, None for a person with no chat identity yet."""
    return (await chat_addresses(session, [person_id])).get(person_id)


async def chat_addresses(session: AsyncSession, people: Iterable[int]) -> dict[int, ChatAddress]:
    """The chat address of each person who has a chat identity: the one they wrote from
    last (people answer where they last wrote), else the newest; one the platform said
    cannot be reached (``unreachable_at``) only when there is no other."""
    query = select_columns(
        ChannelIdentity.person_id,
        ChannelIdentity.channel,
        ChannelIdentity.external_id,
        ChannelIdentity.last_inbound_at,
        ChannelIdentity.id,
        ChannelIdentity.unreachable_at,
    )
    never = datetime.min.replace(tzinfo=CHINA)
    best: dict[int, tuple[tuple[bool, bool, datetime, int], str, str]] = {}
    people = sorted(set(people))
    for statement in among(session, query, col(ChannelIdentity.person_id), people, Integer):
        for person, channel, address, last_inbound, identity_id, gone in await session.exec(
            statement
        ):
            reachable = gone is None
            rank = (reachable, last_inbound is not None, last_inbound or never, identity_id or 0)
            if person not in best or rank > best[person][0]:
                best[person] = (rank, channel, address)
    return {person: ChatAddress(channel, address) for person, (_, channel, address) in best.items()}
