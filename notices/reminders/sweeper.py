"""The sweeper: every kind once per call, in its own transaction, recorded before it is
sent (the unique key in ``reminders_sent``), and rendered through Jinja's public API; and
the sweep's tasks (``TASKS``: closing polls), each in its own transaction too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from jinja2 import Template
from sqlalchemy import String
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.message import OutboundMessage, as_buttons
from notices.outbox import enqueue_many
from notices.reminders.finders import REMINDERS, TASKS
from notices.reminders.kinds import Due, Reminder, ReminderSettings, Repeat, Sweep, Task
from notices.templating import text_environment
from storage.bulk import insert_many
from storage.db import SessionFactory, transaction
from storage.models import ReminderSent
from storage.sql import among, one_writer, plan_for_values, try_xact_lock
from workflow.clock import CHINA, Clock
from workflow.overdue import StepClock
from workflow.people import ChatAddress, Grants, chat_addresses
from workflow.rooms import RoomTree
from workflow.unfollow_links import UnfollowLinks
from workflow.workdays import WorkdayCalendar

log = logging.getLogger("mashangyi.reminders")

#: Namespace of our advisory locks (the first of the two int4 keys), "ms" for mashangyi.
LOCK_CLASS = 0x6D73
#: Messages rendered between two yields to the event loop (a few milliseconds of work).
_YIELD_EVERY = 500
T = TypeVar("T")


@dataclass
class SweepReport:
    office_hours: bool
    #: Messages written to the outbox, per reminder kind that ran; for a task, the things
    #: it did (polls closed).
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
        tasks: Sequence[Task] = TASKS,
        lock: bool = True,
        unfollow_links: UnfollowLinks | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.calendar = calendar
        self.settings = settings or ReminderSettings()
        self.public_base_url = public_base_url.rstrip("/")
        self.reminders = tuple(reminders)
        self.tasks = tuple(tasks)
        names = [r.name for r in self.reminders] + [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError("reminder and task names must be unique")
        self.lock = lock
        self.unfollow_links = unfollow_links
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
            if not kinds and not self.tasks:
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
            gives += [self._do(task, sweep) for task in self.tasks]
            names = [r.name for r in kinds] + [t.name for t in self.tasks]
            if not serial:
                # Each kind in its own transaction at the same time: while the server
                # inserts one kind's rows on one core, this process renders another's on
                # the other (about a sixth off the heaviest sweep, bench/README.md). SQLite
                # has one writer: there they go one after the other.
                results = await asyncio.gather(*gives, return_exceptions=True)
            else:
                results = [await _outcome(give) for give in gives]
            for name, sent in zip(names, results, strict=True):
                if isinstance(sent, BaseException):
                    # One kind's failure must not stop the others; its transaction rolled
                    # back, so the next sweep gives exactly what this one did not.
                    log.error("reminders: %s failed", name, exc_info=sent)
                    report.failed.append(name)
                    continue
                if sent is None:
                    report.skipped.append(name)
                else:
                    report.sent[name] = sent
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

    async def _do(self, task: Task, sweep: Sweep) -> int | None:
        """One task in one transaction, under its lock as a reminder kind; how many things
        it did, None if another process holds the lock."""
        async with transaction(self.sessions) as session:
            if self.lock and not await try_xact_lock(session, LOCK_CLASS, task.name):
                return None
            return await task.run(session, sweep)

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
            if reminder.unfollow is not None and self.unfollow_links is not None:
                subject, subject_id = reminder.unfollow(due)
                link = self.unfollow_links.url(subject, subject_id, key[2], sweep.now)
                body = replace(body, unfollow_url=link)
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
