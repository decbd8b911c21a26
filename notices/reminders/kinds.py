"""What a kind of reminder is: ``Reminder`` (finder, audience, repeat, digest, office hours),
the audiences, and the ``Sweep`` a finder reads (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from workflow.follows import Subject
from workflow.lifecycle import Role, public_url
from workflow.overdue import StepClock
from workflow.overdue import responsible_roles as _responsible_roles
from workflow.people import Grants
from workflow.rooms import RoomTree
from workflow.workdays import WorkdayCalendar


class Repeat(StrEnum):
    ONCE = "once"  # once per occurrence: a review step, a year, a meeting
    WORKDAY = "workday"  # at most once per working day, for as long as it stays due


@dataclass(frozen=True)
class ReminderSettings:
    #: Office hours, China time: reminders with ``office_hours`` go out only in
    #: [work_start, work_end) on working days.
    work_start: time = time(9, 0)
    work_end: time = time(17, 30)
    #: Working days past the due date before the supervisors are told.
    escalate_after_days: int = 3
    #: How long before a meeting its remote participants are reminded.
    meeting_reminders: tuple[timedelta, ...] = (timedelta(hours=24), timedelta(minutes=30))
    #: How often sweeps run: a reminder moved out of someone's night goes this much before
    #: the night begins, so that the sweep that sends it is not in the night yet.
    sweep_interval: timedelta = timedelta(minutes=10)
    #: “Is it solved?” unanswered this long after implementation: asked once more; as long
    #: again after that: recorded as unanswered.
    satisfaction_after: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.work_end <= self.work_start:
            raise ValueError("work_end must be later than work_start")
        if self.escalate_after_days < 1:
            raise ValueError("escalate_after_days must be at least 1")
        if self.satisfaction_after <= timedelta(0):
            raise ValueError("satisfaction_after must be positive")


@dataclass(frozen=True)
class Due:
    """One thing a reminder is due for, as a finder reports it."""

    subject: str  # what it is about: "topic:42", "room:7"
    occurrence: str  # which time of it: a step's start, a year; a new one is reminded anew
    room_id: int  # the room whose people are meant (responsible, conveners, supervisors)
    topic_id: int | None = None
    submitter_id: int | None = None
    state: str | None = None
    #: Values for the template (a digest's template gets them as ``items``).
    context: Mapping[str, Any] = field(default_factory=dict)
    #: Whom it is for, when the finder knows (audience ``Listed``: a room's followers).
    people: tuple[int, ...] = ()


@dataclass
class Sweep:
    """One run: the moment, the calendar, the room tree and grants, loaded once and shared
    by every reminder; ``memo`` keeps finder results that several reminders use."""

    now: datetime
    today: date
    settings: ReminderSettings
    calendar: WorkdayCalendar
    steps: StepClock
    tree: RoomTree
    grants: Grants
    public_base_url: str
    memo: dict[Any, Any] = field(default_factory=dict)

    def topic_url(self, number: str, state: str) -> str:
        return public_url(self.public_base_url, number, state)


Finder = Callable[[AsyncSession, Sweep], Awaitable[list[Due]]]


class Audience(Protocol):
    def people(self, sweep: Sweep, due: Due) -> list[int]:
        """The people to tell about ``due``."""
        ...


@dataclass(frozen=True)
class Task:
    """Timed work of the sweep that is no reminder: it tells nobody itself (a poll closing
    records a push job, notices/poll_pushes.py). ``run`` works in the transaction it is
    given, under the kind's lock like a reminder, and says how many things it did."""

    name: str
    run: Callable[[AsyncSession, Sweep], Awaitable[int]]


@dataclass(frozen=True)
class Reminder:
    name: str  # also the template (templates/reminders/<name>.txt) and the outbox kind
    find: Finder
    to: Audience
    repeat: Repeat = Repeat.ONCE
    digest: bool = False
    office_hours: bool = True
    #: Buttons under the message, as (label, payload); the dialogs check every press again.
    buttons: Callable[[Due], list[tuple[str, str]]] | None = None
    #: What the message's unfollow link unfollows (``("room", id)``), for the WeChat
    #: messages that cannot carry the unfollow button (the sweeper signs it per person).
    unfollow: Callable[[Due], tuple[Subject, int]] | None = None


# -- audiences --------------------------------------------------------------------------


@dataclass(frozen=True)
class Responsible:
    """Whoever may move the topic on from its current state, in the topic's room."""

    def people(self, sweep: Sweep, due: Due) -> list[int]:
        assert due.state is not None, "Responsible needs a due item with a state"
        return [pid for pid, _ in sweep.grants.holders(due.room_id, _responsible_roles(due.state))]


@dataclass(frozen=True)
class Submitter:
    """The person who raised the topic."""

    def people(self, sweep: Sweep, due: Due) -> list[int]:
        return [due.submitter_id] if due.submitter_id is not None else []


@dataclass(frozen=True)
class RoomRole:
    """Holders of one role in the item's room."""

    role: Role

    def people(self, sweep: Sweep, due: Due) -> list[int]:
        return [pid for pid, _ in sweep.grants.holders(due.room_id, (self.role,))]


@dataclass(frozen=True)
class Supervisors:
    """The supervisors of the nearest district room above the item's room."""

    def people(self, sweep: Sweep, due: Due) -> list[int]:
        return sweep.grants.supervisors(sweep.tree, due.room_id)[1]


@dataclass(frozen=True)
class Listed:
    """The people the finder named with the item (``Due.people``)."""

    def people(self, sweep: Sweep, due: Due) -> list[int]:
        return list(due.people)
