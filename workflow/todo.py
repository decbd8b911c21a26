"""A reviewer's to-do list: the open topics of their rooms they can act on, a page at a time.

Which topics a person can act on is decided in SQL from the transition table: a role held
in a room makes the states where that role has an action work to do there (an admin: every
staff action). So a page costs two bounded statements (the page, and how many in all),
whatever the number of open topics. Actions that need a prior one on record
(``Transition.after``) do not count: every state they start from has another action for
the same roles. Withdrawing one's own topic is not review work and does not count either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, or_
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Topic
from workflow.lifecycle import SUBMITTER, TRANSITIONS, Role
from workflow.permissions import Actor


@dataclass(frozen=True)
class TodoPage:
    topics: list[Topic]
    total: int  # every topic on the list, all pages
    offset: int  # how many come before this page

    @property
    def more(self) -> int:
        """How many come after this page."""
        return max(self.total - self.offset - len(self.topics), 0)


def actionable_states(roles: Iterable[str]) -> frozenset[str]:
    """The states in which a holder of ``roles`` in a topic's room has an action."""
    roles = set(roles)
    states: set[str] = set()
    for t in TRANSITIONS.values():
        staff = t.roles - {SUBMITTER}
        if not t.after and staff and (roles & staff or Role.ADMIN in roles):
            states |= {str(s) for s in t.sources}
    return frozenset(states)


def _work(actor: Actor) -> ColumnElement[bool]:
    """Topics in one of the actor's rooms, in a state their roles there act in."""
    roles: dict[int, set[str]] = defaultdict(set)
    for room_id, role in actor.grants:
        roles[room_id].add(role)
    rooms_by_states: dict[frozenset[str], list[int]] = defaultdict(list)
    for room_id, held in roles.items():
        states = actionable_states(held)
        if states:
            rooms_by_states[states].append(room_id)
    if not rooms_by_states:
        return false()
    return or_(
        *(
            and_(col(Topic.room_id).in_(sorted(rooms)), col(Topic.state).in_(sorted(states)))
            for states, rooms in rooms_by_states.items()
        )
    )


async def todo_page(
    session: AsyncSession, actor: Actor, *, offset: int = 0, limit: int = 10
) -> TodoPage:
    """``limit`` topics from ``offset`` on, most urgent first: the nearest review deadline,
    then those without one, oldest first. An offset past the end (items handled since the
    list was shown) gives the last page."""
    work = _work(actor)
    total = (await session.exec(select(func.count()).select_from(Topic).where(work))).one()
    if total and offset >= total:
        offset = (total - 1) // limit * limit
    topics = (
        await session.exec(
            select(Topic)
            .where(work)
            .order_by(col(Topic.review_due_at).is_(None), col(Topic.review_due_at), col(Topic.id))
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return TodoPage(list(topics), total, offset)
