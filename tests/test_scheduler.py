"""APScheduler drives the sweeps in ``serve`` and in ``worker``. Nothing here sleeps: tests
wait for events the sweeps and senders set, with a timeout only as a safety net."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, select

from bot.config import load_config
from bot.services import Services, build_services
from bot.web import create_app
from bot.worker import run_worker
from dialogs.inbox import keep
from dialogs.types import Inbound
from notices.message import OutboundMessage
from notices.reminders import Sweeper, SweepReport
from notices.scheduler import SWEEP_JOB, SweepScheduler
from storage.models import OutboxMessage
from tests.world import build_world
from workflow.clock import CHINA, FixedClock

SAFETY = 10  # seconds; only reached when something is broken


async def test_the_scheduler_sweeps_at_start_then_every_interval_in_china_time() -> None:
    calls: list[int] = []
    ran = asyncio.Event()

    async def sweep() -> None:
        calls.append(1)
        ran.set()

    scheduler = SweepScheduler(sweep, timedelta(minutes=10))
    job = scheduler.scheduler.get_job(SWEEP_JOB)
    assert job is not None
    assert job.trigger.interval == timedelta(minutes=10)
    assert str(job.trigger.timezone) == str(scheduler.scheduler.timezone) == "Asia/Shanghai"
    assert (job.coalesce, job.misfire_grace_time, job.max_instances) == (True, None, 1)

    scheduler.start()
    await asyncio.wait_for(ran.wait(), SAFETY)  # the start-up run, not ten minutes later
    await scheduler.stop()
    assert calls == [1]
    assert not scheduler.scheduler.running


async def test_stopping_lets_a_running_sweep_finish() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def sweep() -> None:
        started.set()
        await release.wait()
        finished.append("done")

    scheduler = SweepScheduler(sweep, timedelta(minutes=10))
    scheduler.start()
    await asyncio.wait_for(started.wait(), SAFETY)
    stopping = asyncio.create_task(scheduler.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # waiting for the sweep
    release.set()
    await asyncio.wait_for(stopping, SAFETY)
    assert finished == ["done"]


async def test_stopping_cancels_a_sweep_that_outlives_the_timeout() -> None:
    started = asyncio.Event()
    outcome: list[str] = []

    async def sweep() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never finishes by itself
        except asyncio.CancelledError:
            outcome.append("cancelled")  # its transaction would roll back here
            raise

    scheduler = SweepScheduler(sweep, timedelta(minutes=10))
    scheduler.start()
    await asyncio.wait_for(started.wait(), SAFETY)
    await asyncio.wait_for(scheduler.stop(grace=0), SAFETY)
    assert outcome == ["cancelled"]


# -- serve and worker --------------------------------------------------------------------------


@pytest.fixture
async def services(engine: object, database_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    clock = FixedClock(datetime(2026, 2, 9, 10, tzinfo=CHINA))
    services = build_services(load_config(path, env={}), clock=clock)
    world = await build_world(services.sessions, clock, services.calendar)
    await world.open("V1")
    clock.set(datetime(2026, 2, 24, 10, tzinfo=CHINA))  # overdue since this morning
    yield services
    await services.close()


def signal_sweeps(services: Services) -> asyncio.Event:
    """Make every sweeper the services build set the returned event after each run."""
    swept = asyncio.Event()
    build = services.sweeper

    def sweeper() -> Sweeper:
        built = build()

        async def run_once() -> SweepReport:
            report = await Sweeper.run_once(built)
            swept.set()
            return report

        built.run_once = run_once  # type: ignore[method-assign]
        return built

    services.sweeper = sweeper  # type: ignore[method-assign]
    return swept


async def reminder_kinds(services: Services) -> list[str]:
    async with services.sessions() as session:
        rows = await session.exec(
            select(OutboxMessage.kind)
            .where(col(OutboxMessage.kind).startswith("reminder."))
            .order_by(col(OutboxMessage.id))
        )
        return list(rows)


async def test_serve_runs_the_sweeps_with_the_app(services: Services) -> None:
    swept = signal_sweeps(services)
    client = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        await asyncio.wait_for(swept.wait(), SAFETY)
        assert sorted(await reminder_kinds(services)) == [
            "reminder.review.delayed",
            "reminder.review.nudge",
        ]
    finally:
        await client.close()  # stops the scheduler with the app


async def test_serve_without_background_work_does_not_sweep(services: Services) -> None:
    swept = signal_sweeps(services)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()
    assert not swept.is_set()
    assert await reminder_kinds(services) == []


class Recorder:
    def __init__(self, wanted: int) -> None:
        self.kinds: list[str] = []
        self.wanted = wanted
        self.enough = asyncio.Event()

    async def send(self, message: OutboxMessage, content: OutboundMessage) -> None:
        if message.kind.startswith("reminder."):
            self.kinds.append(message.kind)
            if len(self.kinds) >= self.wanted:
                self.enough.set()


async def test_the_worker_sweeps_and_delivers_without_a_web_server(services: Services) -> None:
    recorder = Recorder(wanted=2)
    services.senders["console"] = recorder
    swept = signal_sweeps(services)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(services, stop))
    try:
        await asyncio.wait_for(swept.wait(), SAFETY)
        await asyncio.wait_for(recorder.enough.wait(), SAFETY)
    finally:
        stop.set()
        await asyncio.wait_for(worker, SAFETY)
        gc.unfreeze()  # the worker froze this test process's heap (bench/checks.py)
    assert sorted(recorder.kinds) == ["reminder.review.delayed", "reminder.review.nudge"]


async def test_the_worker_handles_kept_messages(services: Services) -> None:
    """A WeChat message kept before it was handled (dialogs/inbox.py) by a web process that
    then stopped: the worker's loop handles it and its reply goes into the outbox."""
    inbound = Inbound("wechat", "oKeptBeforeStop", "text", text="菜单", message_id="4242")
    await keep(services.sessions, inbound, services.clock.now())
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(services, stop))
    try:
        for _ in range(SAFETY * 100):
            async with services.sessions() as session:
                rows = (
                    await session.exec(
                        select(OutboxMessage).where(OutboxMessage.channel == "wechat")
                    )
                ).all()
            if rows:
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(worker, SAFETY)
        gc.unfreeze()  # the worker froze this test process's heap
    assert [row.idempotency_key for row in rows] == ["wechat:late:4242:0"]
