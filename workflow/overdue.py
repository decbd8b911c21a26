"""Overdue review steps: which topics have waited past their five working days, for how
long, and who must act. The scheduler's sweeps and ``mashangyi overdue`` both read them here.

Everything is derived from the database and the transition table: a topic is overdue when
it is in a clocked state and its ``review_due_at`` has passed; the people responsible are
those holding a role that may move it on from that state in the topic's room; the step's
supervisors are those of the nearest supervising (district, else city) room above it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache

from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import AnySelect, select_columns
from storage.models import Topic
from workflow.clock import CHINA, last_day
from workflow.lifecycle import CLOCKED_STATES, SUBMITTER, TRANSITIONS
from workflow.people import Grants
from workflow.rooms import RoomInfo, RoomTree
from workflow.workdays import WorkdayCalendar


@cache
def responsible_roles(state: str) -> frozenset[str]:
    """The roles that may move a topic on from ``state`` (the submitter's withdrawal aside).

    Read off the transition table, so a new clocked state needs only its rows there.
    """
    return frozenset(
        role
        for transition in TRANSITIONS.values()
        if state in transition.sources
        for role in transition.roles
        if role != SUBMITTER
    )


# -- overdue steps ----------------------------------------------------------------------


@dataclass(frozen=True)
class OverdueStep:
    """A topic whose review step has run past its due time (the columns a sweep needs)."""

    topic_id: int
    number: str
    title: str
    state: str
    room_id: int
    submitter_id: int | None
    started_at: datetime
    due_at: datetime

    @property
    def occurrence(self) -> str:
        """Names this step of this topic: a step is known by when it started (a topic sent
        back, or transferred, starts a new step with new reminders)."""
        return self.started_at.astimezone(CHINA).strftime("%Y%m%dT%H%M%S.%f")


def overdue_query(now: datetime, states: Collection[str] = CLOCKED_STATES) -> AnySelect:
    """Topics in a clocked state whose review window ended at or before ``now``, most
    overdue first. Served by ``ix_topics_state_due (state, review_due_at)``: the cost grows
    with the overdue count, not with the number of topics (bench/sweep.py shows both)."""
    return (
        select_columns(
            Topic.id,
            Topic.number,
            Topic.title,
            Topic.state,
            Topic.room_id,
            Topic.submitter_id,
            Topic.step_started_at,
            Topic.review_due_at,
        )
        .where(col(Topic.state).in_(sorted(states)), col(Topic.review_due_at) <= now)
        .order_by(col(Topic.review_due_at), col(Topic.id))
    )


async def overdue_steps(
    session: AsyncSession, now: datetime, states: Collection[str] = CLOCKED_STATES
) -> list[OverdueStep]:
    """The overdue steps (``overdue_query``), as plain values."""
    rows = await session.exec(overdue_query(now, states))
    return [OverdueStep(*row) for row in rows]


class StepClock:
    """Working-day arithmetic for overdue steps as of one day, memoised per date: ten
    thousand overdue topics share a few dozen distinct start and due days."""

    def __init__(self, calendar: WorkdayCalendar, today: date, escalate_after_days: int) -> None:
        if escalate_after_days < 1:
            raise ValueError("escalate_after_days must be at least 1")
        self.calendar = calendar
        self.today = today
        self.escalate_after_days = escalate_after_days
        self._between: dict[date, int] = {}
        self._expected: dict[date, date] = {}
        self._last_day: dict[datetime, date] = {}

    def _since(self, day: date) -> int:
        if day not in self._between:
            self._between[day] = self.calendar.workdays_between(day, self.today)
        return self._between[day]

    def waited(self, step: OverdueStep) -> int:
        """Working days the step has waited: those after the day it started, up to today."""
        return self._since(step.started_at.astimezone(CHINA).date())

    def due_on(self, step: OverdueStep) -> date:
        """The last day of the review window."""
        due_at = step.due_at
        if due_at not in self._last_day:
            self._last_day[due_at] = last_day(due_at)
        return self._last_day[due_at]

    def overdue(self, step: OverdueStep) -> int:
        """Working days past the last day of the window, up to today."""
        return self._since(self.due_on(step))

    def expected_by(self, step: OverdueStep) -> date:
        """The last day of the grace window (N more working days) before escalation; what the
        submitter is told to expect."""
        due = self.due_on(step)
        if due not in self._expected:
            self._expected[due] = self.calendar.add_workdays(due, self.escalate_after_days)
        return self._expected[due]

    def escalated(self, step: OverdueStep) -> bool:
        """True once the grace window has ended too: the supervisors are told."""
        return self.today > self.expected_by(step)


# -- the listing for operators (``mashangyi overdue``) -----------------------------------------


@dataclass(frozen=True)
class OverdueItem:
    step: OverdueStep
    room: RoomInfo
    waited: int
    overdue: int
    due_on: date
    expected_by: date
    escalated: bool
    #: (person id, role) of everyone who may act on it now; empty: nobody holds the role.
    responsible: list[tuple[int, str]]
    supervising_room: RoomInfo | None


async def list_overdue(
    session: AsyncSession,
    now: datetime,
    calendar: WorkdayCalendar,
    *,
    escalate_after_days: int,
    under: int | None = None,
) -> list[OverdueItem]:
    """Every overdue step (in the subtree of room ``under``, if given), most overdue first."""
    tree, grants = await RoomTree.load(session), await Grants.load(session)
    scope = tree.subtree(under) if under is not None else None
    clock = StepClock(calendar, now.astimezone(CHINA).date(), escalate_after_days)
    items = []
    for step in await overdue_steps(session, now):
        if scope is not None and step.room_id not in scope:
            continue
        items.append(
            OverdueItem(
                step=step,
                room=tree[step.room_id],
                waited=clock.waited(step),
                overdue=clock.overdue(step),
                due_on=clock.due_on(step),
                expected_by=clock.expected_by(step),
                escalated=clock.escalated(step),
                responsible=grants.holders(step.room_id, responsible_roles(step.state)),
                supervising_room=grants.supervisors(tree, step.room_id)[0],
            )
        )
    return items
