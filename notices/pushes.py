"""Pushes to many: a topic publicized, its results published, its progress recorded, a poll
opened or closed, told to everyone concerned (notices/audiences.py) through the outbox.

A push to 100,000 people cannot be one transaction (it would hold the topic's change open
for minutes and lose everything on a restart), so it goes in two steps:

1. **Recorded with the change.** ``PushWriter``, a ``Lifecycle`` listener, writes one
   ``PushJob`` row in the transaction of the topic's change (``schedule_push``; a poll's
   opening and closing are recorded the same way, notices/poll_pushes.py). The message is
   rendered once, here. The submitter is told by notices/notify.py in a text of their own
   and is excluded, with the actor, from the job.
2. **Expanded in chunks.** ``PushExpander`` (a background loop in ``serve`` and ``worker``)
   takes an open job, reads the next ``chunk`` people after its ``cursor`` (in id order),
   writes their outbox rows and moves the cursor, all in one small transaction. Each row is
   keyed ``push:<event_key>:<person_id>``: a chunk written twice (a crash after the commit
   but before… nothing: the cursor moved in the same commit; two expanders on SQLite, where
   nothing locks the job) writes each message once, and a crash before the commit loses
   nothing, the next round does the chunk again. The cursor update is conditional on the
   cursor read, so of two expanders one commits the chunk and the other rolls back.
   PostgreSQL: ``FOR UPDATE SKIP LOCKED`` keeps them on different jobs in the first place.

Every push to followers carries an unfollow button (``ft:<topic_id>:0``, a room's
``fr:<room_id>:0``) after the message's own and, for the WeChat messages that cannot carry
buttons, a signed unfollow link (workflow/unfollow_links.py). A person
whose chat the platform said is unreachable (Telegram 403) gets a row that is dead at once,
with the reason: visible, and not sent. A room's followers get one digest a day instead
(the reminder kind ``room.digest``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.audiences import Audience, audience_of, next_people, unreachable
from notices.message import OutboundMessage, as_buttons
from notices.outbox import enqueue_many
from notices.templating import text_environment
from storage.db import SessionFactory, transaction
from storage.models import OutboxMessage, Room, Topic
from storage.pushes import PushJob
from storage.sql import dialect, insert_for
from workflow.clock import Clock
from workflow.engine import DomainEvent
from workflow.follows import Subject
from workflow.lifecycle import public_url
from workflow.payloads import FOLLOW_ROOM, FOLLOW_TOPIC, Button, Ref, Setting
from workflow.people import chat_addresses
from workflow.satisfaction import asked
from workflow.texts import Catalogue, catalogue
from workflow.unfollow_links import UnfollowLinks

log = logging.getLogger(__name__)

TEXTS = Catalogue(Path(__file__).with_name("zh_CN.toml"))
#: The topic events pushed to the topic's audience (templates/pushes/<event>.txt).
PUSHED = frozenset(
    {
        "topic.publicized",
        "topic.results_published",
        "topic.progress_recorded",
        "topic.reply_recorded",
        # ... with 满意 / 基本满意 / 不满意: the public may answer too (workflow/satisfaction.py)
        "topic.implemented",
    }
)
#: The audiences that follow something: what (for the unfollow link), the unfollow
#: button's label and payload (a poll's voters follow nothing).
FOLLOWED: dict[str, tuple[Subject, str, Ref[Setting]]] = {
    "topic": ("topic", "unfollow_topic", FOLLOW_TOPIC),
    "room": ("room", "unfollow_room", FOLLOW_ROOM),
}
#: People per expansion transaction.
CHUNK = 500
#: PostgreSQL: the outbox's statistics are refreshed after this many rows written. A push
#: multiplies the unsent rows in minutes; planned on the statistics of a quiet outbox (a
#: handful unsent), the dispatcher's head-of-line claim becomes a nested loop over all of
#: them, quadratic: 18,700 pending rows took 275 s per claim in bench/push.py. Autovacuum's
#: analyze comes only after 10 % of the whole table has changed, history included.
ANALYZE_EVERY = 5_000
#: ... and at the end of a push that wrote at least this many (not after every small one).
ANALYZE_AT_END = 1_000
_jobs = PushJob.__table__
_outbox = OutboxMessage.__table__


def push_key(event_key: str, person_id: int) -> str:
    return f"push:{event_key}:{person_id}"


async def schedule_push(
    session: AsyncSession,
    *,
    event_key: str,
    kind: str,
    audience: Audience,
    subject_id: int,
    message: OutboundMessage,
    now: datetime,
    topic_id: int | None = None,
    exclude: Iterable[int | None] = (),
) -> bool:
    """Record a push in the caller's transaction; False (nothing added) when one with this
    ``event_key`` exists already (the change replayed)."""
    statement = (
        insert_for(session, _jobs)
        .values(
            event_key=event_key,
            kind=kind,
            audience=audience,
            subject_id=subject_id,
            topic_id=topic_id,
            exclude=sorted({p for p in exclude if p is not None}),
            message=message.to_json(),
            cursor=0,
            expanded=0,
            created_at=now,
            updated_at=now,
            done_at=None,
        )
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(_jobs.c.id)
    )
    return (await session.exec(statement)).scalar_one_or_none() is not None


class PushWriter:
    """A ``Lifecycle`` listener: the pushed topic events become push jobs."""

    def __init__(self, clock: Clock, public_base_url: str) -> None:
        self.clock = clock
        self.public_base_url = public_base_url.rstrip("/")
        self.env = text_environment()

    async def __call__(
        self, session: AsyncSession, topic: Topic, events: list[DomainEvent]
    ) -> None:
        for event in events:
            if event.name not in PUSHED:
                continue
            assert topic.id is not None
            url = public_url(self.public_base_url, topic.number, topic.state)
            room = await session.get(Room, topic.room_id)
            text = (
                self.env.get_template(f"pushes/{event.name}.txt")
                .render(topic=topic, room=room, fields=event.fields, url=url, labels=catalogue())
                .strip()
            )
            await schedule_push(
                session,
                event_key=str(event.event_id),
                kind=f"push.{event.name}",
                audience="topic",
                subject_id=topic.id,
                topic_id=topic.id,
                # The submitter hears of it from notices/notify.py; nobody of their own act.
                exclude=(topic.submitter_id, event.actor_id),
                message=OutboundMessage(
                    text=text,
                    url=url,
                    topic_number=topic.number,
                    buttons=as_buttons(asked(event.name, topic.id)),
                ),
                now=self.clock.now(),
            )


class PushExpander:
    """Expands open push jobs into outbox rows, one chunk per transaction."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        *,
        links: UnfollowLinks | None = None,
        chunk: int = CHUNK,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.sessions, self.clock, self.links, self.chunk = sessions, clock, links, chunk
        self._unanalyzed = 0

    async def run_once(self, max_chunks: int | None = None) -> int:
        """Expand chunks until no job is open (or ``max_chunks``); how many rows written."""
        total, chunks = 0, 0
        while max_chunks is None or chunks < max_chunks:
            written = await self.step()
            if written is None:
                break
            total, chunks = total + written, chunks + 1
        return total

    async def run_forever(self, stop: asyncio.Event, idle_seconds: float = 1.0) -> None:
        while not stop.is_set():
            try:
                written = await self.step()
            except Exception:
                log.exception("pushes: expanding a chunk failed; trying again")
                written = None
            if written is None and not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=idle_seconds)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)  # let the dispatcher in this process send meanwhile

    async def step(self) -> int | None:
        """One chunk of the oldest open job, in one transaction: the rows written (0 when
        another expander took this chunk), None when no job is open."""
        try:
            written = await self._step()
        except _Lost:
            return 0
        if written is not None:
            self._unanalyzed += written
            ended = written < self.chunk  # a job's last chunk: its rows are all there
            if self._unanalyzed >= (ANALYZE_AT_END if ended else ANALYZE_EVERY):
                await self._analyze()
        return written

    async def _analyze(self) -> None:
        self._unanalyzed = 0
        async with self.sessions() as session:
            if dialect(session) != "postgresql":
                return
            await session.exec(text("ANALYZE outbox_messages"))  # type: ignore[call-overload]
            await session.commit()

    async def _step(self) -> int | None:
        async with transaction(self.sessions) as session:
            job = (
                await session.exec(
                    select(PushJob)
                    .where(col(PushJob.done_at).is_(None))
                    .order_by(col(PushJob.id))
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if job is None:
                return None
            now = self.clock.now()
            people = await next_people(
                session,
                audience_of(job.audience),
                job.subject_id,
                after=job.cursor,
                limit=self.chunk,
                exclude=job.exclude,
            )
            rows, dead = await self._rows(session, job, people, now)
            await enqueue_many(session, rows, now=now)
            if dead:
                await _bury(session, dead)
            moved = await session.exec(
                update(_jobs)
                .where(_jobs.c.id == job.id, _jobs.c.cursor == job.cursor)
                .values(
                    cursor=people[-1] if people else job.cursor,
                    expanded=job.expanded + len(rows),
                    updated_at=now,
                    done_at=now if len(people) < self.chunk else None,
                )
                .returning(_jobs.c.id)
            )
            if moved.scalar_one_or_none() is None:
                # Another expander committed this chunk first: ours rolls back.
                raise _Lost()
            if len(people) < self.chunk:
                log.info("pushes: %s done, %d messages", job.event_key, job.expanded + len(rows))
            return len(rows)

    async def _rows(
        self, session: AsyncSession, job: PushJob, people: list[int], now: datetime
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The outbox rows of ``people``; and the keys of those to unreachable chats, with
        the reason."""
        addresses = await chat_addresses(session, people)
        gone = await unreachable(session, addresses.values())
        base = OutboundMessage.from_json(job.message)
        rows: list[dict[str, Any]] = []
        dead: dict[str, str] = {}
        for person in people:
            address = addresses.get(person)
            if address is None:  # no chat yet: nobody to write to
                continue
            message = base
            followed = FOLLOWED.get(job.audience)
            if followed is not None:  # what the person follows, and how to stop
                subject, button, off = followed
                message = replace(
                    base,
                    buttons=(
                        *base.buttons,
                        Button(
                            TEXTS.label("buttons", button),
                            off.build(Setting(job.subject_id, False)),
                        ),
                    ),
                    unfollow_url=(
                        self.links.url(subject, job.subject_id, person, now) if self.links else ""
                    ),
                )
            key = push_key(job.event_key, person)
            rows.append(
                {
                    "key": key,
                    "channel": address.channel,
                    "address": address.external_id,
                    "kind": job.kind,
                    "message": message,
                    "person_id": person,
                    "topic_id": job.topic_id,
                }
            )
            since = gone.get((address.channel, address.external_id))
            if since is not None:
                dead[key] = f"unreachable: the chat blocked the bot (since {since})"
        return rows, dead


class _Lost(Exception):
    pass


async def _bury(session: AsyncSession, dead: dict[str, str]) -> None:
    """Rows just written for unreachable chats: dead at once, with the reason."""
    for key, reason in dead.items():
        await session.exec(
            update(_outbox)
            .where(_outbox.c.idempotency_key == key, _outbox.c.status == "pending")
            .where(_outbox.c.attempts == 0)
            .values(status="dead", last_error=reason)
        )
