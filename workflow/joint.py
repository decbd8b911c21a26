"""Joint recommendations (联名荐题) as one small state machine, read like the lifecycle.

A member's recommendation waits for its co-signers; each answers once. ``TRANSITIONS`` says
who may do what in which state: a co-signer who is still a member of the room confirms or
declines while it waits; the last confirmation opens the topic (``opened``), or, if the
lifecycle refuses to open it, the recommendation fails (``failed``). A recommendation still
waiting when its time is up has lapsed: nobody may answer it any more and its member is
told (the reminder sweep asks ``lapsed``). Every refusal is a ``JointRefused`` with a stable
``reason`` (audited) and a message for the person; a refused answer changes nothing.

The rows are ``JointRecommendation`` (the draft, the room, the initiator and the answers in
``data``), found by the random token their buttons carry.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import and_, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import JointRecommendation, Room
from workflow.errors import NotPermitted, WorkflowError, WrongState
from workflow.lifecycle import Role
from workflow.permissions import Actor, held_role
from workflow.rooms import get_room

#: How long co-signers have to answer.
ANSWER_DAYS = 7
YES, NO = "yes", "no"


class JointState(StrEnum):
    WAITING = "waiting"  # for the co-signers' answers (lapsed once ``expires_at`` passed)
    OPENED = "opened"  # every co-signer agreed: the topic is open
    DECLINED = "declined"  # a co-signer declined: no topic
    FAILED = "failed"  # all agreed, but the lifecycle refused to open the topic


@dataclass(frozen=True)
class JointTransition:
    action: str
    sources: frozenset[JointState]
    target: JointState
    #: Roles of which a co-signer must hold one in the recommendation's room to take it;
    #: empty: taken by this module itself, as the outcome of the last answer.
    roles: frozenset[str]
    answer: str | None = None  # what a co-signer's answer records


W = frozenset({JointState.WAITING})
# fmt: off
TRANSITIONS: dict[str, JointTransition] = {t.action: t for t in (
    #               action     from  to                    who                     records
    JointTransition("confirm", W,    JointState.WAITING,  frozenset({Role.MEMBER}), YES),
    JointTransition("decline", W,    JointState.DECLINED, frozenset({Role.MEMBER}), NO),
    JointTransition("open",    W,    JointState.OPENED,   frozenset()),
    JointTransition("fail",    W,    JointState.FAILED,   frozenset()),
)}
# fmt: on


class JointRefused(WorkflowError):
    """An answer not taken. ``reason`` is stable (audited): forged, not_addressed, used,
    ended, expired, not_permitted; ``code`` is the lifecycle's kind of refusal."""

    def __init__(self, reason: str, kind: type[WorkflowError]) -> None:
        super().__init__(f"joint_{reason}")
        self.reason, self.code = reason, kind.code


def lapsed(now: datetime) -> ColumnElement[bool]:
    """Recommendations still waiting whose time is up (``is_lapsed`` as a query)."""
    return and_(
        col(JointRecommendation.status) == JointState.WAITING,
        col(JointRecommendation.expires_at) <= now,
    )


def is_lapsed(row: JointRecommendation, now: datetime) -> bool:
    return row.status == JointState.WAITING and row.expires_at <= now


def start(
    session: AsyncSession, *, room: Room, initiator_id: int, draft: Mapping[str, Any], now: datetime
) -> JointRecommendation:
    """Set ``draft`` aside until every co-signer it names (``draft["cosigners"]``) agrees."""
    row = JointRecommendation(
        token=secrets.token_urlsafe(12),
        status=JointState.WAITING,
        data={
            "room": room.code,
            "initiator": initiator_id,
            "draft": dict(draft),
            "answers": {str(int(pid)): None for pid in draft["cosigners"]},
        },
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(days=ANSWER_DAYS),
    )
    session.add(row)
    return row


async def find(session: AsyncSession, token: str) -> JointRecommendation | None:
    """The recommendation a button's token names, locked until the caller's transaction
    ends (two co-signers answering at once are taken one after the other)."""
    rows = await session.exec(
        select(JointRecommendation).where(JointRecommendation.token == token).with_for_update()
    )
    return rows.first()


def cosigners(row: JointRecommendation) -> list[int]:
    return [int(pid) for pid in row.data["answers"]]


@dataclass(frozen=True)
class Answered:
    """A co-signer's answer, taken: ``transition`` is confirm or decline."""

    transition: JointTransition
    waiting: int  # co-signers who have not answered yet

    @property
    def declined(self) -> bool:
        return self.transition.target == JointState.DECLINED

    @property
    def complete(self) -> bool:
        """Every co-signer agreed: the caller opens the topic, then ``opened``/``failed``."""
        return not self.declined and self.waiting == 0


async def answer(
    session: AsyncSession,
    row: JointRecommendation | None,
    actor: Actor,
    agrees: bool | None,
    now: datetime,
) -> Answered:
    """Take ``actor``'s answer (``agrees`` None: a garbled one); raises ``JointRefused``."""
    if row is None or agrees is None:
        raise JointRefused("forged", NotPermitted)
    transition = TRANSITIONS["confirm" if agrees else "decline"]
    answers, me = row.data["answers"], str(actor.person_id)
    if me not in answers:
        raise JointRefused("not_addressed", NotPermitted)
    if answers[me] is not None:
        raise JointRefused("used", WrongState)
    if row.status not in transition.sources:
        raise JointRefused("ended", WrongState)
    if is_lapsed(row, now):
        raise JointRefused("expired", WrongState)
    room = await get_room(session, row.data["room"])
    if room is None or room.id is None or held_role(actor, room.id, transition.roles) is None:
        raise JointRefused("not_permitted", NotPermitted)
    answers = {**answers, me: transition.answer}
    _move(row, transition, now, answers=answers)
    return Answered(transition, sum(a is None for a in answers.values()))


def opened(row: JointRecommendation, topic_id: int, now: datetime) -> None:
    _move(row, TRANSITIONS["open"], now, topic=topic_id)


def failed(row: JointRecommendation, now: datetime) -> None:
    _move(row, TRANSITIONS["fail"], now)


def _move(
    row: JointRecommendation, transition: JointTransition, now: datetime, **data: Any
) -> None:
    """The one place a recommendation changes: its state by the table, and ``data``."""
    if row.status not in transition.sources:
        raise JointRefused("ended", WrongState)
    row.status = transition.target
    row.data = {**row.data, **data}  # a new dict: SQLAlchemy sees the change
    row.updated_at = now
