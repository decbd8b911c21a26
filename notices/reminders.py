"""Scheduled reminders: periodic sweeps over the database that nudge, escalate and remind.

A kind of reminder is one ``Reminder`` record in ``REMINDERS``:

    Reminder("review.nudge", find=overdue_reviews, to=Responsible(), repeat=Repeat.WORKDAY)

- ``find``: which things are due now (a query: overdue review steps, quiet rooms…);
- ``to``: who is told about each (the people responsible for the step, the submitter, the
  supervising district's supervisors, a room's conveners);
- ``repeat``: once per occurrence (a review step, a year), or at most once per working day
  while it stays due;
- ``digest``: one message per person listing everything due for them, instead of one each;
- ``office_hours``: only on working days within ``[reminders] work_start``–``work_end``
  (China time, 调休 Saturdays included) — a meeting reminder would turn this off;
- the text: ``templates/reminders/<name>.txt``.

Meeting reminders, "is it solved?" and the like are a finder and a record here, nothing more.

**The database is the only memory.** Every reminder given is a ``reminders_sent`` row with
a unique key (kind, period, subject, occurrence, person). A sweep inserts the rows first
(``INSERT … ON CONFLICT DO NOTHING RETURNING``) and writes the outbox messages only for the
rows it actually inserted, in the same transaction, with outbox idempotency keys derived
from those rows. So:

- a restart, or a sweep that fails half-way (its transaction rolls back), loses nothing:
  the next sweep finds the same things due and gives what was not given yet;
- two processes sweeping one PostgreSQL database cannot both give a reminder: the second
  insert of a key waits for the first transaction and then conflicts. That unique key is
  the guarantee. On top of it each kind's transaction takes a transaction-scoped advisory
  lock with ``pg_try_advisory_xact_lock``; a process that does not get it skips that kind
  for this round (the holder is doing it), so concurrent workers do not do the work twice
  or queue up behind each other's row locks. The lock needs no clean-up: it ends with the
  transaction, also when a process dies;
- SQLite: one process is assumed (the embedded set-up). A second one could not double-send
  either (same unique key), but its sweeps might fail with "database is locked" and retry.

Each kind has its own transaction. On PostgreSQL the kinds of one sweep run at the same
time, so the messages of different kinds come in no particular order; on SQLite (one
writer) one after the other, in the order of ``REMINDERS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from jinja2 import Template
from sqlalchemy import String, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.message import OutboundMessage, as_buttons
from notices.outbox import enqueue_many
from notices.templating import text_environment
from storage.bulk import insert_many
from storage.db import SessionFactory, transaction
from storage.models import JointRecommendation, ReminderSent, Room, TopicEvent
from storage.sql import among, one_writer, plan_for_values, try_xact_lock
from workflow import joint
from workflow.clock import CHINA, Clock
from workflow.lifecycle import Role, public_url
from workflow.overdue import OverdueStep, StepClock, overdue_steps
from workflow.overdue import responsible_roles as _responsible_roles
from workflow.payloads import CARD, TOPIC
from workflow.people import ChatAddress, Grants, chat_addresses
from workflow.rooms import RoomTree
from workflow.texts import Catalogue, label
from workflow.workdays import WorkdayCalendar

log = logging.getLogger("mashangyi.reminders")

TEXTS = Catalogue(Path(__file__).with_name("zh_CN.toml"))

#: Namespace of our advisory locks (the first of the two int4 keys), "ms" for mashangyi.
LOCK_CLASS = 0x6D73
#: Messages rendered between two yields to the event loop (a few milliseconds of work).
_YIELD_EVERY = 500


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

    def __post_init__(self) -> None:
        if self.work_end <= self.work_start:
            raise ValueError("work_end must be later than work_start")
        if self.escalate_after_days < 1:
            raise ValueError("escalate_after_days must be at least 1")


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
class Reminder:
    name: str  # also the template (templates/reminders/<name>.txt) and the outbox kind
    find: Finder
    to: Audience
    repeat: Repeat = Repeat.ONCE
    digest: bool = False
    office_hours: bool = True
    #: Buttons under the message, as (label, payload); the dialogs check every press again.
    buttons: Callable[[Due], list[tuple[str, str]]] | None = None


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


# -- finders ----------------------------------------------------------------------------


T = TypeVar("T")


def shared(
    query: Callable[[AsyncSession, Sweep], Awaitable[T]],
) -> Callable[[AsyncSession, Sweep], Awaitable[T]]:
    """Run ``query`` once per sweep, however many reminders use it."""

    async def once(session: AsyncSession, sweep: Sweep) -> T:
        if query not in sweep.memo:
            # A task, so that kinds swept at the same time all wait for its one run.
            sweep.memo[query] = asyncio.ensure_future(query(session, sweep))
        return await sweep.memo[query]

    once.__name__ = query.__name__
    return once


def _review_due(sweep: Sweep, step: OverdueStep) -> Due:
    clock = sweep.steps
    return Due(
        subject=f"topic:{step.topic_id}",
        occurrence=step.occurrence,
        room_id=step.room_id,
        topic_id=step.topic_id,
        submitter_id=step.submitter_id,
        state=step.state,
        context={
            "number": step.number,
            "title": step.title,
            "room": sweep.tree[step.room_id].name,
            "state": label("states", step.state),
            "waited": clock.waited(step),
            "overdue": clock.overdue(step),
            "due": clock.due_on(step),
            "expected": clock.expected_by(step),
            "escalated": clock.escalated(step),
            "url": sweep.topic_url(step.number, step.state),
        },
    )


@shared
async def overdue_reviews(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """Review steps (first review, referral, Party approval, outcome review…) past due."""
    return [_review_due(sweep, step) for step in await overdue_steps(session, sweep.now)]


@shared
async def escalated_reviews(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """Overdue steps whose grace window of ``escalate_after_days`` has ended too."""
    return [due for due in await overdue_reviews(session, sweep) if due.context["escalated"]]


def rooms_with_few(action: str, fewer_than: int, levels: Iterable[str], from_month: int) -> Finder:
    """Rooms of ``levels`` with fewer than ``fewer_than`` ``action`` events this calendar
    year (China time), from ``from_month`` on; one occurrence per room and year."""
    levels = frozenset(levels)

    @shared
    async def find(session: AsyncSession, sweep: Sweep) -> list[Due]:
        if sweep.today.month < from_month:
            return []
        year = sweep.today.year
        start = datetime(year, 1, 1, tzinfo=CHINA)
        end = datetime(year + 1, 1, 1, tzinfo=CHINA)
        rows = await session.exec(
            select(TopicEvent.room_id, func.count())
            .where(
                TopicEvent.action == action,
                col(TopicEvent.at) >= start,
                col(TopicEvent.at) < end,
            )
            .group_by(col(TopicEvent.room_id))
        )
        counts = {room_id: count for room_id, count in rows}
        rooms = sorted(
            (r for r in sweep.tree.rooms.values() if r.level in levels), key=lambda r: r.code
        )
        return [
            Due(
                subject=f"room:{room.id}",
                occurrence=str(year),
                room_id=room.id,
                context={"room": room.name, "count": counts.get(room.id, 0), "year": year},
            )
            for room in rooms
            if counts.get(room.id, 0) < fewer_than
        ]

    return find


#: Towns, streets and parks hold at least two consultation meetings a year (001 §22); the
#: reminder comes in the fourth quarter, when there is still time.
quiet_rooms = rooms_with_few(
    "record_meeting", fewer_than=2, levels=("town", "street", "park"), from_month=10
)


def open_topic(due: Due) -> list[tuple[str, str]]:
    """A button that opens the submitter's view of the topic ("t:<id>", dialogs/my_topics)."""
    if due.topic_id is None:  # not about one topic: nothing to open
        return []
    return [(TEXTS.label("buttons", "open_topic"), TOPIC.build(due.topic_id))]


def open_card(due: Due) -> list[tuple[str, str]]:
    """A button that opens the review card with its action buttons ("o:<id>",
    dialogs/review.py): the nudge leads straight to the decision."""
    if due.topic_id is None:
        return []
    return [(TEXTS.label("buttons", "open_card"), CARD.build(due.topic_id))]


async def lapsed_joint_recommendations(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """Joint recommendations (联名荐题) whose co-signers did not all answer in time."""
    lapsed = (await session.exec(select(JointRecommendation).where(joint.lapsed(sweep.now)))).all()
    codes = {row.data["room"] for row in lapsed}
    rooms = (
        {
            r.code: r.id
            for r in (await session.exec(select(Room).where(col(Room.code).in_(codes)))).all()
        }
        if codes
        else {}
    )
    return [
        Due(
            subject=f"joint:{row.id}",
            occurrence="lapsed",
            room_id=room_id,
            submitter_id=int(row.data["initiator"]),
            context={"title": row.data["draft"]["title"]},
        )
        for row in lapsed
        if (room_id := rooms.get(row.data["room"])) is not None
    ]


# -- the registry -------------------------------------------------------------------------

REMINDERS: tuple[Reminder, ...] = (
    # Five working days are up (000 §18): whoever must act is nudged every working day.
    Reminder("review.nudge", overdue_reviews, Responsible(), Repeat.WORKDAY, buttons=open_card),
    # ... and the submitter is told, once per step, that it is late and by when to expect it.
    Reminder("review.delayed", overdue_reviews, Submitter(), buttons=open_topic),
    # N more working days: the district's supervisors get the list.
    Reminder("review.escalated", escalated_reviews, Supervisors(), digest=True),
    # Fourth quarter: rooms short of two meetings this year, and the list for supervisors.
    Reminder("activity.low", quiet_rooms, RoomRole(Role.CONVENER)),
    Reminder("activity.low_list", quiet_rooms, Supervisors(), digest=True),
    # A joint recommendation nobody finished answering: its member hears that it lapsed.
    Reminder("joint.lapsed", lapsed_joint_recommendations, Submitter()),
)


# -- the sweeper --------------------------------------------------------------------------


@dataclass
class SweepReport:
    office_hours: bool
    #: Messages written to the outbox, per reminder kind that ran.
    sent: dict[str, int] = field(default_factory=dict)
    #: Kinds another process was sweeping at that moment (PostgreSQL advisory lock).
    skipped: list[str] = field(default_factory=list)
    #: Kinds whose transaction failed (rolled back; the next sweep tries again).
    failed: list[str] = field(default_factory=list)


Key = tuple[str, str, int]  # subject, occurrence, person


class Sweeper:
    """Runs every reminder kind once per call; safe to call at any time, as often as liked."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        calendar: WorkdayCalendar,
        settings: ReminderSettings | None = None,
        *,
        public_base_url: str = "http://127.0.0.1:8080",
        reminders: Sequence[Reminder] = REMINDERS,
        lock: bool = True,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.calendar = calendar
        self.settings = settings or ReminderSettings()
        self.public_base_url = public_base_url.rstrip("/")
        self.reminders = tuple(reminders)
        names = [r.name for r in self.reminders]
        if len(set(names)) != len(names):
            raise ValueError("reminder names must be unique")
        self.lock = lock
        self._running = asyncio.Lock()  # one sweep at a time in this process
        self.env = text_environment()

    def office_hours(self, now: datetime) -> bool:
        local = now.astimezone(CHINA)
        return self.calendar.is_workday(local.date()) and (
            self.settings.work_start <= local.time() < self.settings.work_end
        )

    async def run_once(self) -> SweepReport:
        """Give every reminder that is due now and has not been given yet."""
        async with self._running:
            now = self.clock.now()
            report = SweepReport(office_hours=self.office_hours(now))
            kinds = [r for r in self.reminders if report.office_hours or not r.office_hours]
            if not kinds:
                return report
            today = now.astimezone(CHINA).date()
            async with self.sessions() as session:
                tree, grants = await RoomTree.load(session), await Grants.load(session)
                serial = one_writer(session)
            sweep = Sweep(
                now=now,
                today=today,
                settings=self.settings,
                calendar=self.calendar,
                steps=StepClock(self.calendar, today, self.settings.escalate_after_days),
                tree=tree,
                grants=grants,
                public_base_url=self.public_base_url,
            )
            gives = [self._give(reminder, sweep) for reminder in kinds]
            if not serial:
                # Each kind in its own transaction at the same time: while the server
                # inserts one kind's rows on one core, this process renders another's on
                # the other (about a sixth off the heaviest sweep, bench/README.md). SQLite
                # has one writer: there they go one after the other.
                results = await asyncio.gather(*gives, return_exceptions=True)
            else:
                results = [await _outcome(give) for give in gives]
            for reminder, sent in zip(kinds, results, strict=True):
                if isinstance(sent, BaseException):
                    # One kind's failure must not stop the others; its transaction rolled
                    # back, so the next sweep gives exactly what this one did not.
                    log.error("reminders: %s failed", reminder.name, exc_info=sent)
                    report.failed.append(reminder.name)
                    continue
                if sent is None:
                    report.skipped.append(reminder.name)
                else:
                    report.sent[reminder.name] = sent
            given = {name: n for name, n in report.sent.items() if n}
            if given:
                log.info("reminders: %s", ", ".join(f"{k} {n}" for k, n in given.items()))
            return report

    async def _give(self, reminder: Reminder, sweep: Sweep) -> int | None:
        """One kind in one transaction; the number of messages, None if another process
        holds this kind's lock."""
        async with transaction(self.sessions) as session:
            if self.lock and not await try_xact_lock(session, LOCK_CLASS, reminder.name):
                return None
            # The finders' and ``among``'s arrays planned for their values (storage/sql.py).
            # The tables written here have no foreign keys (migrations 0006, 0009), whose
            # cached check plans this setting would otherwise re-plan for every row.
            await plan_for_values(session)
            period = sweep.today.isoformat() if reminder.repeat is Repeat.WORKDAY else ""
            wanted: dict[Key, Due] = {}
            order: dict[str, int] = {}  # subject → position, so digests list in finder order
            for due in await reminder.find(session, sweep):
                order.setdefault(due.subject, len(order))
                for person in reminder.to.people(sweep, due):
                    wanted.setdefault((due.subject, due.occurrence, person), due)
            if not wanted:
                return 0
            for key in await _already_given(session, reminder.name, period, wanted):
                wanted.pop(key, None)
            addresses = await chat_addresses(session, {person for _, _, person in wanted})
            # Nobody to write to (no chat identity yet): not recorded, so they are told once
            # they can be reached.
            keys = sorted(key for key in wanted if key[2] in addresses)
            won = await _record(session, reminder.name, period, keys, wanted, sweep)
            messages = await self._messages(reminder, won, wanted, order, addresses, sweep)
            await enqueue_many(session, messages, now=sweep.now)
            return len(messages)

    async def _messages(
        self,
        reminder: Reminder,
        won: dict[Key, int],
        wanted: Mapping[Key, Due],
        order: Mapping[str, int],
        addresses: Mapping[int, ChatAddress],
        sweep: Sweep,
    ) -> list[dict[str, Any]]:
        render = _Renderer(self.env.get_template(f"reminders/{reminder.name}.txt"), sweep)
        kind = f"reminder.{reminder.name}"
        messages: list[dict[str, Any]] = []

        def message(person: int, key: str, body: OutboundMessage, topic_id: int | None) -> None:
            channel, address = addresses[person]
            messages.append(
                {
                    "key": key,
                    "channel": channel,
                    "address": address,
                    "kind": kind,
                    "message": body,
                    "person_id": person,
                    "topic_id": topic_id,
                }
            )

        if reminder.digest:
            per_person: dict[int, list[tuple[Key, int]]] = {}
            for key, sent_id in won.items():
                per_person.setdefault(key[2], []).append((key, sent_id))
            for person, items in sorted(per_person.items()):
                items.sort(key=lambda item: order[item[0][0]])
                contexts = [wanted[key].context for key, _ in items]
                body = OutboundMessage(text=render({"items": contexts, "count": len(contexts)}))
                # Keyed by the first sent record in it: unique, and the same on any retry.
                message(person, f"reminder:{min(i for _, i in items)}", body, None)
            return messages

        # In the finder's order (most overdue first, rooms by code), not the key order.
        ordered = sorted(won.items(), key=lambda item: (order[item[0][0]], item[1]))
        for n, (key, sent_id) in enumerate(ordered, 1):
            if n % _YIELD_EVERY == 0:  # let the kinds swept alongside send their statements
                await asyncio.sleep(0)
            due = wanted[key]
            offered = reminder.buttons(due) if reminder.buttons is not None else ()
            body = OutboundMessage(
                text=render(due.context),
                buttons=as_buttons(offered),
                topic_number=due.context.get("number", ""),
                url=due.context.get("url", ""),
            )
            message(key[2], f"reminder:{sent_id}", body, due.topic_id)
        return messages


class _Renderer:
    """One reminder template for one sweep: ``template.render`` (Jinja's public API) with
    the values every message of the sweep shares. A first sweep renders twenty thousand
    messages; the environment has no default globals (``notices.templating``), which is
    what made ``render`` slow: it copies them, a ChainMap, into every message's context."""

    def __init__(self, template: Template, sweep: Sweep) -> None:
        self.template = template
        self.common = {
            "today": sweep.today,
            "escalate_after_days": sweep.settings.escalate_after_days,
        }

    def __call__(self, values: Mapping[str, Any]) -> str:
        return self.template.render(values, **self.common).strip()


async def _outcome(give: Awaitable[T]) -> T | Exception:
    """What ``give`` returns, or the error it raises (as ``gather(return_exceptions=True)``)."""
    try:
        return await give
    except Exception as error:
        return error


async def _already_given(
    session: AsyncSession, kind: str, period: str, wanted: Mapping[Key, Due]
) -> list[Key]:
    """The wanted keys already on record (the steady state: most of them, most sweeps).
    Served by the unique index (kind, period, subject, …)."""
    query = select(ReminderSent.subject, ReminderSent.occurrence, ReminderSent.person_id).where(
        ReminderSent.kind == kind, ReminderSent.period == period
    )
    subjects = sorted({subject for subject, _, _ in wanted})
    found: list[Key] = []
    for statement in among(session, query, col(ReminderSent.subject), subjects, String):
        found += [(s, o, p) for s, o, p in await session.exec(statement)]
    return found


async def _record(
    session: AsyncSession,
    kind: str,
    period: str,
    keys: Sequence[Key],
    wanted: Mapping[Key, Due],
    sweep: Sweep,
) -> dict[Key, int]:
    """Insert the sent records; return those this transaction inserted, with their ids.

    A key another sweeper inserted meanwhile conflicts and is skipped (on PostgreSQL after
    waiting for that sweeper's transaction to end). Keys go in sorted order so that two
    sweepers inserting overlapping sets cannot deadlock.
    """
    rows = [
        {
            "kind": kind,
            "period": period,
            "subject": subject,
            "occurrence": occurrence,
            "person_id": person,
            "topic_id": wanted[(subject, occurrence, person)].topic_id,
            "room_id": wanted[(subject, occurrence, person)].room_id,
            "sent_on": sweep.today,
            "sent_at": sweep.now,
        }
        for subject, occurrence, person in keys
    ]
    result = await insert_many(
        session,
        ReminderSent.__table__,
        rows,
        conflict=["kind", "period", "subject", "occurrence", "person_id"],
        returning=["id", "subject", "occurrence", "person_id"],
    )
    return {
        (subject, occurrence, person): sent_id for sent_id, subject, occurrence, person in result
    }
