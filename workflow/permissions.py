"""Who may do what: checked here and nowhere else. Deny by default.

A role counts in the room it was granted in. ``admin`` also counts in every room below;
``supervisor`` (a district CPPCC room's) lets a person see every topic below and name the
room in a jurisdiction dispute referred to their room, nothing more.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import RoleGrant, Topic
from workflow.lifecycle import SOURCE_ROLES, SUBMITTER, Role, Source, Transition
from workflow.people import in_force


@dataclass(frozen=True)
class Actor:
    """A person acting now, with their live role grants as (room id, role) pairs."""

    person_id: int | None
    grants: frozenset[tuple[int, str]] = field(default_factory=frozenset)

    def roles_in(self, room_id: int) -> set[str]:
        return {role for rid, role in self.grants if rid == room_id}


async def load_actor(session: AsyncSession, person_id: int) -> Actor:
    """The person with the grants they hold now (revoked grants do not count)."""
    rows = await session.exec(
        select(RoleGrant.room_id, RoleGrant.role).where(
            RoleGrant.person_id == person_id, in_force()
        )
    )
    return Actor(person_id, frozenset((room_id, role) for room_id, role in rows))


def held_role(actor: Actor, room_id: int, roles: Collection[str]) -> str | None:
    """The first (by name) of ``roles`` that ``actor`` holds in room ``room_id`` itself."""
    held = actor.roles_in(room_id) & set(roles)
    return sorted(held)[0] if held else None


def _is_admin_over(actor: Actor, chain: Sequence[int]) -> bool:
    return any((room_id, Role.ADMIN) in actor.grants for room_id in chain)


def acting_role(
    actor: Actor, transition: Transition, topic: Topic, chain: Sequence[int]
) -> str | None:
    """The role in which ``actor`` may take ``transition`` on ``topic``, or None.

    ``chain`` is the topic's room id followed by its ancestors' ids, nearest first.
    """
    if (
        SUBMITTER in transition.roles
        and actor.person_id is not None
        and actor.person_id == topic.submitter_id
    ):
        return SUBMITTER
    held = held_role(actor, topic.room_id, transition.roles)
    if held is not None:
        return held
    if transition.roles - {SUBMITTER} and _is_admin_over(actor, chain):
        return Role.ADMIN
    return None


def can(actor: Actor, transition: Transition, topic: Topic, chain: Sequence[int]) -> bool:
    return acting_role(actor, transition, topic, chain) is not None


def can_view(actor: Actor, topic: Topic, chain: Sequence[int]) -> bool:
    """Submitter, anyone with a role in the topic's room, supervisors and admins above."""
    if actor.person_id is not None and actor.person_id == topic.submitter_id:
        return True
    if actor.roles_in(topic.room_id):
        return True
    return any(
        (room_id, role) in actor.grants
        for room_id in chain
        for role in (Role.SUPERVISOR, Role.ADMIN)
    )


def source_role(
    actor: Actor, source: Source, chain: Sequence[int], *, admin: bool = True
) -> str | None:
    """The role in which ``actor`` may open a topic of ``source`` in ``chain[0]``.

    An admin of the room or one above may open any source (the lifecycle's rule); with
    ``admin=False`` only the source's own role held in the room counts: what the chat
    offers a person (it has no admin's way of opening, e.g. for someone else)."""
    allowed = SOURCE_ROLES[source]
    if allowed is None:
        return SUBMITTER
    held = held_role(actor, chain[0], allowed)
    if held is not None:
        return held
    return Role.ADMIN if admin and _is_admin_over(actor, chain) else None


async def visible_topic(session: AsyncSession, actor: Actor, topic_id: int) -> Topic | None:
    """The one way a person's dialog loads a topic: None unless they may see it."""
    from workflow.rooms import room_chain

    topic = await session.get(Topic, topic_id)
    if topic is None:
        return None
    chain = [room.id for room in await room_chain(session, topic.room_id) if room.id is not None]
    return topic if can_view(actor, topic, chain) else None


def may_moderate(actor: Actor, topic: Topic) -> bool:
    """Deciding on a topic's suggestions (held, reported) is its room's convener's alone:
    they know the village and answer for what its notice board shows."""
    return held_role(actor, topic.room_id, {Role.CONVENER}) is not None


def may_run_poll(actor: Actor, room_id: int) -> bool:
    """Putting a room's topics to a screening poll is its convener's (Yancheng norms §13)."""
    return held_role(actor, room_id, {Role.CONVENER}) is not None
