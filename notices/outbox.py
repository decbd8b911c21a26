"""The outbox: every outbound message is a row, written in the transaction that caused it,
and a delivery loop that claims due rows, sends them through a channel sender and records
the result. (Over 400 lines: claiming, order, pace and lease fencing are one state machine
over one table, and their invariants read best side by side.)

Row life: ``pending`` → ``sending`` (claimed, with a lease in ``claimed_until``, by the worker
identity in ``claimed_by``) → ``sent``, or back to ``pending`` with a later ``not_before``
after a temporary failure, or ``dead`` (permanent failure, too many attempts). The Telegram
webhook writes its immediate replies as ``sending`` already, held by its own identity.

Order: messages to one chat (channel, address) go out in the order they were written. Only
the head of a chat's line is claimed, the oldest row that is neither sent nor dead; a row
that failed temporarily keeps the rows behind it waiting until it goes through or dies.
A batch therefore never holds two rows of one chat, and a chat's rows go one per round.

Pace: a sender with a ``chat_interval`` (Telegram: one message per second per chat) has the
next rows of a chat it has just sent to wait that long (``not_before``), in the same
transaction that records the send, so every dispatcher on the database keeps the pace.

Dead leases: a process taking a worker identity (bot/identity.py guarantees no two live
processes share one) first calls ``reclaim`` for it: whatever its killed predecessor had
claimed, or held in the webhook, is due again at once instead of after the lease.

Body: a row's ``body`` is an ``OutboundMessage``'s JSON (notices/message.py). The dispatcher
decodes it once, before the send, and the sender gets the row and the message; a body it
cannot read (a version it does not know) is dead at once, with the reason.

A dispatcher claims only rows of the channels it has senders for: a message for a channel
this process cannot reach waits, visibly pending, for a process that can.

Several dispatchers (worker processes) may run at once: claiming is ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL plus a conditional update, and every result is recorded with a
conditional update, so two dispatchers never send the same row in the normal course.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter
from sqlalchemy import and_, exists, or_, text, true, update
from sqlalchemy import exc as sa_exc
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.message import OutboundMessage, UnreadableBody
from storage.bulk import insert_many
from storage.db import SessionFactory, transaction
from storage.models import UNSENT, OutboxMessage
from storage.sql import insert_for
from workflow.clock import Clock

log = logging.getLogger(__name__)
#: Every delivery attempt by its result: sent, pending (tried again later), dead, or
#: lost_lease (the result came in after the row's claim had ended).
DELIVERIES = Counter(
    "mashangyi_deliveries_total", "Outbox delivery attempts by result", ["channel", "result"]
)

#: last_error is a Text column, but a reason is for humans reading a dead letter: keep it short.
_MAX_REASON = 500
_T = TypeVar("_T")
#: A send whose result cannot be recorded (the database away) is recorded again this
#: often, until this long before its claim runs out: after that it may be claimed again.
RECORD_RETRY = 0.5
RECORD_MARGIN = timedelta(seconds=10)
#: What a database that is away raises (a bug is not retried), unless the caller gives a
#: finer judgement (the services give bot.edge.is_transient).
_AWAY = (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError, TimeoutError)


def _is_away(exc: BaseException) -> bool:
    return isinstance(exc, _AWAY)


async def retry_while_away(
    attempt: Callable[[], Awaitable[_T]],
    seconds: float,
    away: Callable[[BaseException], bool] = _is_away,
    *,
    what: object = "a result",
) -> _T:
    """``attempt()``, tried again every ``RECORD_RETRY`` seconds while its failure is the
    database being away (``away``), for at most ``seconds``; then the failure is raised.
    For recording what a platform already accepted: not recorded, it is sent again."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not away(exc) or loop.time() + RECORD_RETRY >= give_up:
                raise
            log.warning("outbox: %s not recorded yet (%r); retrying", what, exc)
            await asyncio.sleep(RECORD_RETRY)


_table = OutboxMessage.__table__
_c = _table.c


class DeliveryError(Exception):
    """A send that did not go through; ``reason`` is short and ends up in ``last_error``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemporaryFailure(DeliveryError):
    """429, 5xx, timeouts: worth trying again later (not before ``retry_after`` if given)."""

    def __init__(self, reason: str, retry_after: timedelta | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(DeliveryError):
    """Trying again cannot help (the user blocked the bot, the address is invalid)."""


class Sender(Protocol):
    """Delivers one channel's messages. A sender may also have ``chat_interval``
    (a ``timedelta``): the least time between two messages to one chat (Telegram: 1 s),
    and ``async paused_for() -> float``: seconds during which the whole channel must not
    send (Telegram after a 429): its rows are not claimed meanwhile."""

    async def send(self, row: OutboxMessage, message: OutboundMessage) -> None:
        """Deliver ``message`` (the row's body, decoded) to the row's address; raise a
        DeliveryError subclass when it did not go through. Any other exception is treated
        as a temporary failure."""
        ...


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    channel: str,
    address: str,
    kind: str,
    message: OutboundMessage,
    now: datetime,
    person_id: int | None = None,
    topic_id: int | None = None,
    not_before: datetime | None = None,
    held_until: datetime | None = None,
    held_by: str | None = None,
) -> bool:
    """Add one outbox row inside the caller's transaction (no commit here).

    Returns False, and adds nothing, when a row with this idempotency key already exists:
    the change that caused the message may be replayed (a retried webhook, a re-run sweep)
    and must not produce a second message.

    ``held_until``: the caller sends the message itself; the row is written ``sending``,
    claimed by ``held_by`` until then, and the caller records the result (Telegram replies).
    """
    row = _row(
        key=key,
        channel=channel,
        address=address,
        kind=kind,
        message=message,
        now=now,
        person_id=person_id,
        topic_id=topic_id,
        not_before=not_before,
        held_until=held_until,
        held_by=held_by,
    )
    # ON CONFLICT DO NOTHING rather than select-then-insert: two transactions enqueueing the
    # same key at once must not fail the second one with an integrity error.
    statement = (
        insert_for(session, _table)
        .values(row)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(_c.id)
    )
    result = await session.exec(statement)
    return result.scalar_one_or_none() is not None


async def enqueue_many(
    session: AsyncSession, messages: Sequence[Mapping[str, Any]], *, now: datetime
) -> None:
    """Add many outbox rows inside the caller's transaction (sweeps send thousands at once).

    Each message has ``enqueue``'s keyword arguments (``key``, ``channel``, ``address``,
    ``kind``, ``message``, optionally ``person_id``, ``topic_id``, ``not_before``); keys that
    already exist are skipped, as in ``enqueue``.
    """
    rows = [_row(now=now, **message) for message in messages]
    await insert_many(session, _table, rows, conflict=["idempotency_key"])


def _row(
    *,
    key: str,
    channel: str,
    address: str,
    kind: str,
    message: OutboundMessage,
    now: datetime,
    person_id: int | None = None,
    topic_id: int | None = None,
    not_before: datetime | None = None,
    held_until: datetime | None = None,
    held_by: str | None = None,
) -> dict[str, Any]:
    """A new outbox row, every column given (``insert_many`` wants the same keys in all)."""
    return {
        "idempotency_key": key,
        "channel": channel,
        "address": address,
        "person_id": person_id,
        "topic_id": topic_id,
        "kind": kind,
        "body": message.to_json(),
        "status": "pending" if held_until is None else "sending",
        "attempts": 0,
        "not_before": not_before if not_before is not None else now,
        "claimed_until": held_until,
        "claimed_by": held_by if held_until is not None else None,
        "last_error": None,
        "created_at": now,
        "sent_at": None,
    }


@dataclass(frozen=True)
class _Outcome:
    status: str  # "sent", "pending" (retry later) or "dead"
    reason: str | None = None
    not_before: datetime | None = None
    attempts: int | None = None


class OutboxDispatcher:
    """Claims due outbox rows, sends them, and records what happened."""

    def __init__(
        self,
        sessions: SessionFactory,
        senders: Mapping[str, Sender],
        clock: Clock,
        *,
        max_attempts: int = 8,
        base_backoff: timedelta = timedelta(seconds=30),
        max_backoff: timedelta = timedelta(hours=6),
        lease: timedelta = timedelta(minutes=5),
        batch_size: int = 50,
        addresses: Collection[str] | None = None,
        worker_id: str | None = None,
        records: SessionFactory | None = None,
        paced: bool = True,
        is_transient: Callable[[BaseException], bool] = _is_away,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if lease <= timedelta(0):
            raise ValueError("lease must be positive")
        self._sessions = sessions
        #: Where results are recorded: a send not yet recorded is the at-least-once window,
        #: so the caller may give a pool that no slow work waits on.
        self._records = records or sessions
        #: Whether a failure to record a result is the database being away (retried).
        self._away = is_transient
        self._senders = dict(senders)
        self._clock = clock
        self._max_attempts = max_attempts
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff
        self._lease = lease
        self._batch_size = batch_size
        #: Only these recipients (the console chat delivers just its own person's mail).
        self._addresses = list(addresses) if addresses is not None else None
        #: Recorded on every row this dispatcher claims (see ``reclaim``).
        self._worker_id = worker_id
        #: The least time between two messages to one chat, by channel. Not ``paced``: the
        #: Telegram webhook sending a turn's replies, which go out together as always.
        self._intervals: dict[str, timedelta] = {
            channel: interval
            for channel, sender in self._senders.items()
            if paced and (interval := getattr(sender, "chat_interval", None))
        }

    async def run_once(self) -> int:
        """Claim the due rows, send each, record each result; return how many were handled."""
        claimed = await self._claim()
        handled = 0
        for message in claimed:
            if await self._deliver(message):
                handled += 1
        return handled

    async def drain(self, max_rounds: int = 1000) -> int:
        """Run rounds until one handles nothing (or ``max_rounds``); how many were handled.
        A chat's rows go one per round, so this is how to deliver a chat's whole queue."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            if handled == 0:
                break
            total += handled
        return total

    async def run_forever(self, stop: asyncio.Event, idle_seconds: float = 1.0) -> None:
        """Deliver until ``stop`` is set; rest ``idle_seconds`` only when nothing was due."""
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except Exception:
                # A database hiccup must not end the loop; rest so it does not spin.
                log.exception("outbox: delivery round failed")
                handled = 0
            if handled == 0 and not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=idle_seconds)
                except TimeoutError:
                    pass

    # -- claiming ------------------------------------------------------------------------

    async def _claim(self) -> list[OutboxMessage]:
        now = self._clock.now()
        # Due: pending and not_before has passed, or stuck in 'sending' because the worker
        # that claimed it died (or hung) and its lease ran out (``reclaim`` frees them sooner
        # when the holder restarts). Reclaiming is the one at-least-once window: if that worker
        # had in fact delivered the message (or is still stuck inside the send) but not
        # recorded it, the message goes out a second time. Elsewhere a key is sent at most once.
        # A sender paused as a whole (Telegram after a 429, bot/telegram/limits.py) gets no
        # rows until the pause ends: claiming them would only hand them back.
        channels = [c for c, sender in self._senders.items() if not await _paused(sender)]
        if not channels:
            return []
        scope = and_(
            _c.channel.in_(channels),
            _c.address.in_(self._addresses) if self._addresses is not None else true(),
        )
        waiting = and_(_c.status == "pending", _c.not_before <= now)
        stuck = and_(_c.status == "sending", _c.claimed_until < now)
        due = and_(scope, or_(waiting, stuck))
        # Head of line: no older row of the same chat still waiting or being sent. One probe
        # of the partial index ix_outbox_unsent_chat per candidate (its predicate is spelt
        # exactly as the index's, or SQLite would not use it).
        older = _table.alias("older")
        head = ~exists().where(
            older.c.channel == _c.channel,
            older.c.address == _c.address,
            text(f"older.{UNSENT}"),
            older.c.id < _c.id,
        )
        claimed_until = now + self._lease
        async with transaction(self._sessions) as session:
            # Waiting and stuck rows are picked apart: each is then one range of ix_outbox_due
            # (status, not_before); with the OR in one query SQLite scans the whole table,
            # sent history included. SKIP LOCKED: a second dispatcher passes over rows
            # another is claiming instead of waiting for them. SQLite renders no FOR UPDATE;
            # there the conditional UPDATE below is what keeps two claimers apart.
            ids: list[int] = []
            for kind in (stuck, waiting):
                picked = await session.exec(
                    select(_c.id)
                    .where(scope, kind, head)
                    .order_by(_c.not_before, _c.id)
                    .limit(self._batch_size - len(ids))
                    .with_for_update(skip_locked=True)
                )
                ids += picked.all()
                if len(ids) >= self._batch_size:
                    break
            if not ids:
                return []
            # Repeat the due condition: the rows may have changed since they were selected.
            updated = await session.exec(
                update(_table)
                .where(_c.id.in_(ids), due)
                .values(status="sending", claimed_until=claimed_until, claimed_by=self._worker_id)
                .returning(_c.id)
            )
            won = updated.scalars().all()
            if not won:
                return []
            loaded = await session.exec(
                select(OutboxMessage)
                .where(col(OutboxMessage.id).in_(won))
                .order_by(_c.not_before, _c.id)
            )
            rows = loaded.all()
            # Detach: the rows travel to the senders after this session has closed.
            session.expunge_all()
        return list(rows)

    # -- delivering ----------------------------------------------------------------------

    async def _deliver(self, message: OutboxMessage) -> bool:
        """Send one claimed row and record the outcome; False if it was no longer ours."""
        lease_token = message.claimed_until
        assert lease_token is not None
        if self._clock.now() >= lease_token:
            # A slow batch outlived its lease: another dispatcher may have reclaimed this row
            # already, so sending it now would risk a double send. Hand it back instead.
            await self._release(message, lease_token)
            return False
        outcome = await self._send(message)
        recorded = await self._record_in_time(message, lease_token, outcome)
        DELIVERIES.labels(message.channel, outcome.status if recorded else "lost_lease").inc()
        if not recorded:
            log.warning(
                "outbox: %s was no longer claimed by this dispatcher when its result came in",
                message.idempotency_key,
            )
        elif outcome.status == "dead":
            log.warning("outbox: %s is dead: %s", message.idempotency_key, outcome.reason)
        return recorded

    async def _send(self, message: OutboxMessage) -> _Outcome:
        sender = self._senders[message.channel]  # claimed only for channels with a sender
        # The one place a body is decoded: a sender reads the model, never the stored dict.
        try:
            content = OutboundMessage.from_json(message.body)
        except UnreadableBody as exc:
            reason = _short(f"unreadable body: {exc}")
            return _Outcome("dead", reason=reason, attempts=message.attempts + 1)
        # No session is open here: a slow platform must not hold a DB connection.
        try:
            await sender.send(message, content)
        except PermanentFailure as exc:
            return _Outcome("dead", reason=_short(exc.reason), attempts=message.attempts + 1)
        except TemporaryFailure as exc:
            return self._retry(message, exc.reason, exc.retry_after)
        except DeliveryError as exc:
            return self._retry(message, exc.reason, None)
        except Exception as exc:
            log.warning("outbox: sender for %s raised", message.channel, exc_info=True)
            return self._retry(message, f"{type(exc).__name__}: {exc}", None)
        return _Outcome("sent")

    def _retry(
        self, message: OutboxMessage, reason: str, retry_after: timedelta | None
    ) -> _Outcome:
        attempts = message.attempts + 1
        if attempts >= self._max_attempts and retry_after is None:
            return _Outcome(
                "dead",
                reason=_short(f"gave up after {attempts} attempts: {reason}"),
                attempts=attempts,
            )
        if retry_after is not None:
            # The platform said when: wait exactly that, and do not count it as a failed
            # attempt (a rate limit says nothing against the message; counting it would
            # kill rows within minutes of a long 429 spell).
            return _Outcome(
                "pending",
                reason=_short(reason),
                not_before=self._clock.now() + retry_after,
                attempts=message.attempts,
            )
        return _Outcome(
            "pending",
            reason=_short(reason),
            not_before=self._clock.now() + self.backoff(attempts),
            attempts=attempts,
        )

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failure: base, 2×base, 4×base… up to the cap."""
        # Cap the exponent first so a large attempt count cannot overflow timedelta.
        exponent = min(attempts - 1, 62)
        try:
            delay = self._base_backoff * (2**exponent)
        except OverflowError:
            return self._max_backoff
        return min(self._max_backoff, delay)

    async def _record_in_time(
        self, message: OutboxMessage, lease_token: datetime, outcome: _Outcome
    ) -> bool:
        """``_record``, retried while the database is away, until shortly before the lease
        runs out: a send that is not recorded is sent again after the lease. (The loop
        waits meanwhile; it could claim nothing anyway.)"""
        budget = (lease_token - self._clock.now() - RECORD_MARGIN).total_seconds()
        return await retry_while_away(
            lambda: self._record(message, lease_token, outcome),
            budget,
            self._away,
            what=message.idempotency_key,
        )

    async def _record(
        self, message: OutboxMessage, lease_token: datetime, outcome: _Outcome
    ) -> bool:
        now = self._clock.now()
        values: dict[str, Any]
        if outcome.status == "sent":
            # claimed_by stays on sent and dead rows: who delivered (or gave up on) it.
            values = {"status": "sent", "sent_at": now, "claimed_until": None}
            interval = self._intervals.get(message.channel)
            if interval is not None:
                return await self._conditional_update(
                    message, lease_token, values, pace=now + interval
                )
        elif outcome.status == "pending":
            values = {
                "status": "pending",
                "attempts": outcome.attempts,
                "not_before": outcome.not_before,
                "claimed_until": None,
                "claimed_by": None,
                "last_error": outcome.reason,
            }
        else:
            values = {"status": "dead", "claimed_until": None, "last_error": outcome.reason}
            if outcome.attempts is not None:
                values["attempts"] = outcome.attempts
        return await self._conditional_update(message, lease_token, values)

    async def _release(self, message: OutboxMessage, lease_token: datetime) -> None:
        await self._conditional_update(
            message, lease_token, {"status": "pending", "claimed_until": None, "claimed_by": None}
        )

    async def _conditional_update(
        self,
        message: OutboxMessage,
        lease_token: datetime,
        values: dict[str, Any],
        *,
        pace: datetime | None = None,
    ) -> bool:
        """Update our claimed row; with ``pace``, the chat's waiting rows are not due before
        then (in the same transaction, so no other dispatcher sends in between)."""
        # Only while the row is still 'sending' under *our* lease: never flip a row twice,
        # and never overwrite the result of a dispatcher that reclaimed it after our lease ran
        # out (each claim sets a later claimed_until, so it works as a fencing token).
        async with transaction(self._records) as session:
            result = await session.exec(
                update(_table)
                .where(
                    _c.id == message.id,
                    _c.status == "sending",
                    _c.claimed_until == lease_token,
                )
                .values(**values)
                .returning(_c.id)
            )
            recorded = result.scalar_one_or_none() is not None
            if recorded and pace is not None:
                await session.exec(
                    update(_table)
                    .where(
                        _c.channel == message.channel,
                        _c.address == message.address,
                        text(f"{_table.name}.{UNSENT}"),
                        _c.status == "pending",
                        _c.not_before < pace,
                    )
                    .values(not_before=pace)
                )
            return recorded


async def reclaim(sessions: SessionFactory, worker_id: str) -> int:
    """Release every row ``worker_id`` holds: its dispatcher's claims and its webhook's held
    replies. Only for the process that has just taken that identity (so the holder is dead):
    the rows are due again at once instead of after the lease. Returns how many.

    Like any lease run out, this is at-least-once: the dead process may have sent some of
    them without living to record it.
    """
    async with transaction(sessions) as session:
        result = await session.exec(
            update(_table)
            .where(_c.status == "sending", _c.claimed_by == worker_id)
            .values(status="pending", claimed_until=None, claimed_by=None)
            .returning(_c.id)
        )
        count = len(result.scalars().all())
    if count:
        log.warning("outbox: took back %d rows that %s held when it stopped", count, worker_id)
    return count


async def _paused(sender: Sender) -> bool:
    paused_for = getattr(sender, "paused_for", None)
    return paused_for is not None and await paused_for() > 0


def _short(reason: str) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"
