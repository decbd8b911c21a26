"""The outbox: idempotent enqueue, claiming, retries with backoff, dead letters, leases,
and two dispatchers sharing one table. Time only moves through the injected clock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import func, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.identity import take_identity
from notices.message import OutboundMessage
from notices.notify import tell
from notices.outbox import (
    OutboxDispatcher,
    PermanentFailure,
    Sender,
    TemporaryFailure,
    enqueue,
    reclaim,
)
from storage.db import SessionFactory, make_engine, make_session_factory, transaction
from storage.models import ChannelIdentity, OutboxMessage, Person
from workflow.clock import FixedClock
from workflow.payloads import Button

#: Nothing listens there: a database that went away.
DEAD_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/none"

LEASE = timedelta(minutes=5)


class RecordingSender:
    """Records every message it is asked to send; raises the queued failures first."""

    def __init__(
        self,
        failures: list[BaseException] | None = None,
        *,
        yields: int = 0,
        on_send: Callable[[OutboxMessage], Any] | None = None,
    ) -> None:
        self.failures = list(failures or [])
        self.yields = yields
        self.on_send = on_send
        self.calls: list[str] = []  # every attempt, failed or not
        self.sent: list[str] = []  # only the ones that went through

    async def send(self, message: OutboxMessage, content: OutboundMessage) -> None:
        self.calls.append(message.idempotency_key)
        for _ in range(self.yields):
            await asyncio.sleep(0)  # let the other dispatcher run mid-send
        if self.on_send is not None:
            result = self.on_send(message)
            if asyncio.iscoroutine(result):
                await result
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message.idempotency_key)


async def add(
    sessions: SessionFactory,
    clock: FixedClock,
    key: str,
    *,
    channel: str = "telegram",
    address: str = "chat-1",
    not_before: datetime | None = None,
) -> bool:
    async with transaction(sessions) as session:
        return await enqueue(
            session,
            key=key,
            channel=channel,
            address=address,
            kind="topic_received",
            message=OutboundMessage(text=f"hello {key}"),
            now=clock.now(),
            not_before=not_before,
        )


async def row(sessions: SessionFactory, key: str) -> OutboxMessage:
    async with sessions() as session:
        result = await session.exec(
            select(OutboxMessage).where(OutboxMessage.idempotency_key == key)
        )
        return result.one()


async def count_rows(sessions: SessionFactory) -> int:
    async with sessions() as session:
        return (await session.exec(select(func.count()).select_from(OutboxMessage))).one()


def dispatcher(
    sessions: SessionFactory,
    clock: FixedClock,
    senders: dict[str, Sender],
    **options: Any,
) -> OutboxDispatcher:
    return OutboxDispatcher(sessions, senders, clock, **options)


# -- enqueue -----------------------------------------------------------------------------


async def test_enqueue_same_key_twice_adds_one_row(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    assert await add(sessions, clock, "k1") is True
    assert await add(sessions, clock, "k1") is False
    async with transaction(sessions) as session:
        again = await enqueue(
            session,
            key="k1",
            channel="wechat",
            address="other",
            kind="other",
            message=OutboundMessage(text="different"),
            now=clock.now(),
        )
    assert again is False
    assert await count_rows(sessions) == 1
    stored = await row(sessions, "k1")
    assert (stored.channel, stored.address, OutboundMessage.from_json(stored.body)) == (
        "telegram",
        "chat-1",
        OutboundMessage(text="hello k1"),
    )
    assert (stored.status, stored.attempts, stored.not_before) == ("pending", 0, clock.now())
    assert stored.created_at == clock.now()


async def test_enqueue_belongs_to_the_callers_transaction(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    async with sessions() as session:
        async with session.begin():
            assert await enqueue(
                session,
                key="rolled-back",
                channel="telegram",
                address="chat-1",
                kind="k",
                message=OutboundMessage(),
                now=clock.now(),
            )
            await session.rollback()
    assert await count_rows(sessions) == 0


# -- delivery ----------------------------------------------------------------------------


async def test_successful_delivery_is_marked_sent_and_not_sent_again(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    sender = RecordingSender()
    d = dispatcher(sessions, clock, {"telegram": sender})

    assert await d.run_once() == 1
    stored = await row(sessions, "k1")
    assert stored.status == "sent"
    assert stored.sent_at == clock.now()
    assert stored.claimed_until is None
    assert stored.attempts == 0
    assert stored.last_error is None

    clock.advance(timedelta(days=1))
    assert await d.run_once() == 0
    assert sender.calls == ["k1"]


async def test_rows_are_sent_oldest_first_in_batches(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    start = clock.now()
    for i, key in enumerate(["c", "a", "b"]):
        due = start - timedelta(minutes=10 - i)
        await add(sessions, clock, key, address=f"chat-{key}", not_before=due)
    sender = RecordingSender()
    d = dispatcher(sessions, clock, {"telegram": sender}, batch_size=2)
    assert await d.run_once() == 2
    assert await d.run_once() == 1
    assert await d.run_once() == 0
    assert sender.sent == ["c", "a", "b"]


async def test_row_is_not_sent_before_its_not_before(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    due = clock.now() + timedelta(minutes=10)
    await add(sessions, clock, "later", not_before=due)
    sender = RecordingSender()
    d = dispatcher(sessions, clock, {"telegram": sender})

    assert await d.run_once() == 0
    clock.advance(timedelta(minutes=10) - timedelta(seconds=1))
    assert await d.run_once() == 0
    assert sender.calls == []
    clock.advance(timedelta(seconds=1))
    assert await d.run_once() == 1
    assert sender.sent == ["later"]
    assert (await row(sessions, "later")).sent_at == due


async def test_temporary_failures_back_off_exponentially(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    sender = RecordingSender([TemporaryFailure(f"HTTP 50{i}") for i in range(3)])
    d = dispatcher(sessions, clock, {"telegram": sender}, base_backoff=timedelta(seconds=30))

    for attempt, wait in [(1, 30), (2, 60), (3, 120)]:
        assert await d.run_once() == 1
        stored = await row(sessions, "k1")
        assert stored.status == "pending"
        assert stored.attempts == attempt
        assert stored.last_error == f"HTTP 50{attempt - 1}"
        assert stored.claimed_until is None
        assert stored.not_before == clock.now() + timedelta(seconds=wait)
        # Not due one second early.
        clock.advance(timedelta(seconds=wait - 1))
        assert await d.run_once() == 0
        clock.advance(timedelta(seconds=1))

    assert await d.run_once() == 1
    stored = await row(sessions, "k1")
    assert (stored.status, stored.attempts, stored.sent_at) == ("sent", 3, clock.now())
    assert sender.calls == ["k1"] * 4
    assert sender.sent == ["k1"]


async def test_backoff_is_capped_by_max_backoff(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    sender = RecordingSender([TemporaryFailure("timeout")] * 3)
    d = dispatcher(
        sessions,
        clock,
        {"telegram": sender},
        base_backoff=timedelta(seconds=30),
        max_backoff=timedelta(seconds=100),
    )
    for wait in [30, 60, 100]:
        assert await d.run_once() == 1
        assert (await row(sessions, "k1")).not_before == clock.now() + timedelta(seconds=wait)
        clock.advance(timedelta(seconds=wait))
    assert d.backoff(60) == timedelta(seconds=100)
    assert d.backoff(10_000) == timedelta(seconds=100)


async def test_retry_after_is_waited_exactly_and_is_not_a_failed_attempt(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    sender = RecordingSender(
        [
            TemporaryFailure("HTTP 502"),
            TemporaryFailure("429 Too Many Requests", retry_after=timedelta(minutes=10)),
            TemporaryFailure("429 Too Many Requests", retry_after=timedelta(seconds=10)),
            TemporaryFailure("HTTP 503"),
        ]
    )
    d = dispatcher(
        sessions, clock, {"telegram": sender}, base_backoff=timedelta(seconds=30), max_attempts=3
    )

    assert await d.run_once() == 1  # 502: the backoff, 30 s
    clock.advance(timedelta(seconds=30))
    assert await d.run_once() == 1
    stored = await row(sessions, "k1")
    assert (stored.not_before, stored.attempts) == (clock.now() + timedelta(minutes=10), 1)
    assert stored.last_error == "429 Too Many Requests"
    clock.advance(timedelta(minutes=9, seconds=59))
    assert await d.run_once() == 0
    clock.advance(timedelta(seconds=1))

    # Shorter than the backoff would be (60 s): the platform's word counts, not the backoff.
    assert await d.run_once() == 1
    assert (await row(sessions, "k1")).not_before == clock.now() + timedelta(seconds=10)
    clock.advance(timedelta(seconds=10))
    # Two waits asked for did not count: this is the second failed attempt, not the fourth.
    assert await d.run_once() == 1
    stored = await row(sessions, "k1")
    assert (stored.status, stored.attempts) == ("pending", 2)
    assert stored.not_before == clock.now() + timedelta(seconds=60)
    clock.advance(timedelta(seconds=60))
    assert await d.run_once() == 1
    assert (await row(sessions, "k1")).status == "sent"


async def test_dead_after_max_attempts_with_the_reason(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    sender = RecordingSender([TemporaryFailure("HTTP 502")] * 10)
    d = dispatcher(sessions, clock, {"telegram": sender}, max_attempts=3)

    for _ in range(3):
        assert await d.run_once() == 1
        clock.advance(timedelta(hours=1))
    stored = await row(sessions, "k1")
    assert stored.status == "dead"
    assert stored.attempts == 3
    assert stored.last_error == "gave up after 3 attempts: HTTP 502"
    assert stored.claimed_until is None
    assert stored.sent_at is None

    clock.advance(timedelta(days=30))
    assert await d.run_once() == 0
    assert sender.calls == ["k1"] * 3


async def test_any_other_exception_counts_as_temporary(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    sender = RecordingSender([RuntimeError("connection reset")])
    d = dispatcher(sessions, clock, {"telegram": sender})

    assert await d.run_once() == 1
    stored = await row(sessions, "k1")
    assert (stored.status, stored.attempts) == ("pending", 1)
    assert stored.last_error == "RuntimeError: connection reset"
    assert stored.not_before == clock.now() + timedelta(seconds=30)


async def test_permanent_failure_is_dead_at_once(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    sender = RecordingSender([PermanentFailure("Forbidden: bot was blocked by the user")])
    d = dispatcher(sessions, clock, {"telegram": sender})

    assert await d.run_once() == 1
    stored = await row(sessions, "k1")
    assert stored.status == "dead"
    assert stored.attempts == 1
    assert stored.last_error == "Forbidden: bot was blocked by the user"
    clock.advance(timedelta(days=1))
    assert await d.run_once() == 0
    assert sender.calls == ["k1"]


async def test_a_channel_without_sender_waits_for_a_process_that_has_one(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1", channel="sms")
    await add(sessions, clock, "k2", channel="telegram")
    sender = RecordingSender()
    d = dispatcher(sessions, clock, {"telegram": sender})

    assert await d.run_once() == 1
    assert sender.calls == ["k2"]
    assert (await row(sessions, "k2")).status == "sent"
    stored = await row(sessions, "k1")
    assert (stored.status, stored.attempts, stored.last_error) == ("pending", 0, None)

    sms = RecordingSender()
    assert await dispatcher(sessions, clock, {"sms": sms}).run_once() == 1
    assert sms.calls == ["k1"]


# -- order and pace ----------------------------------------------------------------------


async def test_a_chats_later_rows_wait_behind_one_that_failed_and_others_go_on(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    for key, chat in (("a1", "A"), ("a2", "A"), ("b1", "B"), ("a3", "A")):
        await add(sessions, clock, key, address=chat)
    # The first call is a1's (the oldest head): it fails, temporarily.
    sender = RecordingSender([TemporaryFailure("HTTP 502")])
    d = dispatcher(sessions, clock, {"telegram": sender}, base_backoff=timedelta(seconds=30))

    assert await d.drain() == 2  # a1 failed; b1 went; a2 and a3 wait behind a1
    assert (sender.calls, sender.sent) == (["a1", "b1"], ["b1"])
    assert [(await row(sessions, k)).status for k in ("a1", "a2", "a3")] == ["pending"] * 3
    clock.advance(timedelta(seconds=29))
    assert await d.drain() == 0
    clock.advance(timedelta(seconds=1))
    assert await d.drain() == 3
    assert sender.sent == ["b1", "a1", "a2", "a3"]


async def test_a_row_claimed_elsewhere_keeps_its_chats_later_rows_waiting(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    """Head of line also across dispatchers: while one sends a chat's row, another does not
    send the next one (it would arrive first)."""
    await add(sessions, clock, "first", address="A")
    await add(sessions, clock, "second", address="A")
    other = RecordingSender()
    b = dispatcher(sessions, clock, {"telegram": other})

    async def meanwhile(_message: OutboxMessage) -> None:
        assert await b.run_once() == 0

    a_sender = RecordingSender(on_send=meanwhile)
    assert await dispatcher(sessions, clock, {"telegram": a_sender}).run_once() == 1
    assert (a_sender.sent, other.calls) == (["first"], [])
    assert await b.run_once() == 1
    assert other.sent == ["second"]


class PacedSender(RecordingSender):
    chat_interval = timedelta(seconds=1)


async def test_a_paced_channel_sends_one_message_per_interval_to_each_chat(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    for number in range(3):
        for chat in ("A", "B"):
            await add(sessions, clock, f"{chat}{number}", address=chat)
    await add(sessions, clock, "w0", channel="wechat", address="A")
    await add(sessions, clock, "w1", channel="wechat", address="A")
    paced, unpaced = PacedSender(), RecordingSender()
    d = dispatcher(sessions, clock, {"telegram": paced, "wechat": unpaced})

    rounds = []
    for _ in range(3):
        before = len(paced.sent)
        await d.drain()
        rounds.append(paced.sent[before:])
        clock.advance(timedelta(milliseconds=999))
        assert await d.drain() == 0  # not a millisecond early
        clock.advance(timedelta(milliseconds=1))
    assert rounds == [["A0", "B0"], ["A1", "B1"], ["A2", "B2"]]
    assert unpaced.sent == ["w0", "w1"]  # WeChat has no such rule: both at once


# -- leases ------------------------------------------------------------------------------


class Crash(BaseException):
    """Stands in for a worker process dying mid-send (not an Exception: nothing catches it)."""


async def test_crashed_sending_row_is_reclaimed_after_its_lease(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    crashed = dispatcher(sessions, clock, {"telegram": RecordingSender([Crash()])}, lease=LEASE)
    with pytest.raises(Crash):
        await crashed.run_once()
    stored = await row(sessions, "k1")
    assert stored.status == "sending"
    assert stored.claimed_until == clock.now() + LEASE

    sender = RecordingSender()
    d = dispatcher(sessions, clock, {"telegram": sender}, lease=LEASE)
    assert await d.run_once() == 0
    clock.advance(LEASE)  # claimed_until == now: not yet expired
    assert await d.run_once() == 0
    clock.advance(timedelta(seconds=1))
    assert await d.run_once() == 1
    assert sender.sent == ["k1"]
    stored = await row(sessions, "k1")
    assert (stored.status, stored.attempts, stored.sent_at) == ("sent", 0, clock.now())


async def test_result_after_lost_lease_does_not_overwrite_the_new_claim(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    """A hung sender whose lease ran out: another dispatcher reclaims and sends (the documented
    at-least-once window), and the late result of the first is discarded."""
    await add(sessions, clock, "k1")
    b_sending = asyncio.Event()
    a_recorded = asyncio.Event()
    b_sender = RecordingSender([TemporaryFailure("HTTP 503")], on_send=lambda _m: _b_send())
    b = dispatcher(sessions, clock, {"telegram": b_sender}, lease=LEASE)
    b_task: asyncio.Task[int] | None = None

    async def _b_send() -> None:
        b_sending.set()
        await a_recorded.wait()

    async def hang(_message: OutboxMessage) -> None:
        nonlocal b_task
        clock.advance(LEASE + timedelta(seconds=1))
        b_task = asyncio.create_task(b.run_once())
        await b_sending.wait()

    a_sender = RecordingSender(on_send=hang)
    a = dispatcher(sessions, clock, {"telegram": a_sender}, lease=LEASE)

    assert await a.run_once() == 0  # its success came too late to be recorded
    a_recorded.set()
    assert b_task is not None
    assert await b_task == 1
    assert a_sender.sent == ["k1"]
    assert b_sender.calls == ["k1"]
    stored = await row(sessions, "k1")
    # B's temporary failure is what counts, not A's late success.
    assert (stored.status, stored.attempts, stored.last_error) == ("pending", 1, "HTTP 503")
    assert stored.sent_at is None


async def test_batch_that_outlives_its_lease_hands_the_rest_back(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    await add(sessions, clock, "k2", address="chat-2")  # another chat: claimed together
    sender = RecordingSender(on_send=lambda _m: clock.advance(LEASE))
    d = dispatcher(sessions, clock, {"telegram": sender}, lease=LEASE)

    assert await d.run_once() == 1
    assert sender.calls == ["k1"]
    stored = await row(sessions, "k2")
    assert (stored.status, stored.claimed_until, stored.attempts) == ("pending", None, 0)

    sender.on_send = None
    assert await d.run_once() == 1
    assert sender.sent == ["k1", "k2"]


async def test_a_restarted_worker_takes_back_its_own_rows_at_once_and_no_one_elses(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "mine", address="A")
    await add(sessions, clock, "theirs", address="B")
    await add(sessions, clock, "after-mine", address="A")
    # Two processes each die (or hang) mid-send: one was "h:worker:0", one "h:worker:1".
    for worker, chat in (("h:worker:0", "A"), ("h:worker:1", "B")):
        crashing = RecordingSender([Crash()])
        d = dispatcher(sessions, clock, {"telegram": crashing}, worker_id=worker, addresses=[chat])
        with pytest.raises(Crash):
            await d.run_once()
    assert [(await row(sessions, k)).claimed_by for k in ("mine", "theirs")] == [
        "h:worker:0",
        "h:worker:1",
    ]
    # h:worker:0 starts again (taking the identity proves its predecessor is gone): its row
    # is due at once; h:worker:1 may be alive and sending, so its lease stands.
    assert await reclaim(sessions, "h:worker:0") == 1
    sender = RecordingSender()
    restarted = dispatcher(sessions, clock, {"telegram": sender}, worker_id="h:worker:0")
    assert await restarted.drain() == 2
    assert sender.sent == ["mine", "after-mine"]
    theirs = await row(sessions, "theirs")
    assert (theirs.status, theirs.claimed_by) == ("sending", "h:worker:1")
    assert await reclaim(sessions, "h:worker:0") == 0
    clock.advance(LEASE + timedelta(seconds=1))  # only its lease running out frees it
    assert await restarted.drain() == 1
    assert sender.sent == ["mine", "after-mine", "theirs"]


def test_two_live_processes_never_share_a_worker_identity(tmp_path: Path) -> None:
    first = take_identity(tmp_path, "worker", "host")
    second = take_identity(tmp_path, "worker", "host")
    serving = take_identity(tmp_path, "serve", "host")
    assert (first.name, second.name, serving.name) == (
        "host:worker:0",
        "host:worker:1",
        "host:serve:0",
    )
    first.release()
    assert take_identity(tmp_path, "worker", "host").name == "host:worker:0"
    second.release()
    serving.release()


def test_a_killed_process_leaves_its_identity_to_its_successor(tmp_path: Path) -> None:
    """SIGKILL runs no clean-up: the kernel dropping the lock is what frees the name."""
    script = (
        "import sys, time; from pathlib import Path; from bot.identity import take_identity; "
        "i = take_identity(Path(sys.argv[1]), 'worker', 'host'); print(i.name, flush=True); "
        "time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "host:worker:0"
        alive = take_identity(tmp_path, "worker", "host")
        assert alive.name == "host:worker:1"  # the child holds slot 0
        alive.release()
    finally:
        child.kill()
        child.wait()
    assert take_identity(tmp_path, "worker", "host").name == "host:worker:0"


# -- the loop ----------------------------------------------------------------------------


async def test_run_forever_survives_errors_and_stops_when_told(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    await add(sessions, clock, "k1")
    stop = asyncio.Event()
    sender = RecordingSender(on_send=lambda _m: stop.set())
    dead = make_engine(DEAD_DATABASE)
    gone = make_session_factory(dead)
    claims = 0

    def claiming() -> AsyncSession:
        """The dispatcher claims in sessions of this factory (it records in ``records``):
        the first round finds the database gone, the next one finds it back."""
        nonlocal claims
        claims += 1
        return (gone if claims == 1 else sessions)()

    d = dispatcher(cast(SessionFactory, claiming), clock, {"telegram": sender}, records=sessions)
    try:
        await asyncio.wait_for(d.run_forever(stop, idle_seconds=0), timeout=10)
    finally:
        await dead.dispose()
    assert claims == 2
    assert sender.sent == ["k1"]
    assert (await row(sessions, "k1")).status == "sent"


# -- two dispatchers ---------------------------------------------------------------------


async def _enqueue_many(sessions: SessionFactory, clock: FixedClock, n: int) -> list[str]:
    keys = [f"bulk-{i:03d}" for i in range(n)]
    async with transaction(sessions) as session:
        for number, key in enumerate(keys):
            await enqueue(
                session,
                key=key,
                channel="telegram",
                # Many chats: one chat's rows go one at a time, whoever claims them.
                address=f"chat-{number % 60}",
                kind="bulk",
                message=OutboundMessage(),
                now=clock.now(),
            )
    return keys


async def _race(
    first: SessionFactory, second: SessionFactory, clock: FixedClock, keys: list[str]
) -> None:
    a_sender, b_sender = RecordingSender(yields=3), RecordingSender(yields=3)
    a = dispatcher(first, clock, {"telegram": a_sender}, batch_size=20)
    b = dispatcher(second, clock, {"telegram": b_sender}, batch_size=20)
    handled = 0
    for _ in range(40):
        counts = await asyncio.gather(a.run_once(), b.run_once(), a.run_once(), b.run_once())
        handled += sum(counts)
        if sum(counts) == 0:
            break
    recorded = a_sender.calls + b_sender.calls
    # Both took part, or the test would prove nothing about two dispatchers.
    assert a_sender.calls and b_sender.calls
    assert handled == len(keys)
    assert sorted(recorded) == keys
    assert [k for k, n in Counter(recorded).items() if n != 1] == []
    async with first() as session:
        statuses = (
            await session.exec(
                select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
            )
        ).all()
    assert [tuple(s) for s in statuses] == [("sent", len(keys))]


@pytest.mark.postgres_only("FOR UPDATE SKIP LOCKED across connections")
async def test_two_dispatchers_with_separate_engines_send_each_key_once(
    database_url: str, sessions: SessionFactory, clock: FixedClock
) -> None:
    keys = await _enqueue_many(sessions, clock, 300)
    other_engine = make_engine(database_url)
    try:
        await _race(sessions, make_session_factory(other_engine), clock, keys)
    finally:
        await other_engine.dispose()


async def test_two_dispatchers_sharing_an_engine_send_each_key_once(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    keys = await _enqueue_many(sessions, clock, 300)
    await _race(sessions, sessions, clock, keys)


async def test_mark_is_conditional_on_the_row_still_being_claimed(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    """If the row stops being 'sending' while it is out (e.g. an operator killed it), the
    dispatcher's result does not flip it back."""
    await add(sessions, clock, "k1")

    async def kill(_message: OutboxMessage) -> None:
        async with transaction(sessions) as session:
            await session.exec(
                update(OutboxMessage)
                .where(OutboxMessage.idempotency_key == "k1")  # type: ignore[arg-type]
                .values(status="dead", last_error="cancelled by operator")
            )

    d = dispatcher(sessions, clock, {"telegram": RecordingSender(on_send=kill)})
    assert await d.run_once() == 0
    stored = await row(sessions, "k1")
    assert (stored.status, stored.last_error, stored.sent_at) == (
        "dead",
        "cancelled by operator",
        None,
    )


async def test_tell_writes_once_to_the_chat_last_used_and_skips_a_person_without_one(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    """``notices.notify.tell``, the dialogs' way to write to someone else (a co-signer)."""
    now = clock.now()
    async with transaction(sessions) as session:
        reached, unreachable = Person(display_name="甲"), Person(display_name="乙")
        session.add_all([reached, unreachable])
        await session.flush()
        assert reached.id is not None and unreachable.id is not None
        for channel, ref, ago in (("telegram", "42", 3), ("wechat", "o-jia", 1)):
            session.add(
                ChannelIdentity(
                    person_id=reached.id,
                    channel=channel,
                    external_id=ref,
                    last_inbound_at=now - timedelta(days=ago),
                )
            )
    for _ in range(2):  # a retried step writes its message once
        async with transaction(sessions) as session:
            for person in (reached.id, unreachable.id):
                await tell(
                    session,
                    person,
                    key=f"t:{person}",
                    kind="joint",
                    text="请确认联名",
                    buttons=[("确认联名", "cs:x:y")],
                    now=now,
                )
    async with sessions() as session:
        rows = (await session.exec(select(OutboxMessage))).all()
    assert [
        (r.channel, r.address, r.person_id, r.kind, OutboundMessage.from_json(r.body)) for r in rows
    ] == [
        (
            "wechat",
            "o-jia",
            reached.id,
            "joint",
            OutboundMessage(text="请确认联名", buttons=(Button("确认联名", "cs:x:y"),)),
        )
    ]


class AwayFor:
    """A session factory whose database is away for the first ``times`` transactions."""

    def __init__(self, sessions: SessionFactory, times: int) -> None:
        self.sessions, self.times = sessions, times

    def __call__(self) -> Any:
        if self.times > 0:
            self.times -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        return self.sessions()


async def test_a_send_the_database_cannot_record_at_once_is_recorded_later_not_resent(
    sessions: SessionFactory, clock: FixedClock
) -> None:
    """The platform took the message, then the database went away for a moment: the result
    is recorded once it is back, so the row is not sent again when the lease runs out."""
    sender = RecordingSender()
    await add(sessions, clock, "k1")
    away = AwayFor(sessions, times=2)
    d = dispatcher(sessions, clock, {"telegram": sender}, records=away)  # type: ignore[arg-type]
    assert await d.run_once() == 1
    assert (await row(sessions, "k1")).status == "sent"
    clock.advance(LEASE + timedelta(seconds=1))
    assert await d.run_once() == 0
    assert sender.sent == ["k1"]
