"""APScheduler runs the reminder sweeps periodically, in this process's event loop.

APScheduler 3 cannot share a job store between processes, and does not need to here: the
jobs are in-memory interval triggers in every process (``serve`` and ``worker``), and the
sweeps themselves are idempotent and safe to run concurrently (see ``notices.reminders``).
The scheduler only decides *when* to look; the sweep decides, from the injected clock and
the database, what is due — so a missed or late run loses nothing, the next one catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import Histogram

log = logging.getLogger("mashangyi.scheduler")
SWEEP_SECONDS = Histogram(
    "mashangyi_reminder_sweep_seconds",
    "Reminder sweep duration",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)

#: China time, always: a trigger built without a zone would use the host's (PLATFORMS.md).
TIMEZONE = "Asia/Shanghai"
SWEEP_JOB = "reminder-sweep"


class SweepScheduler:
    """Runs ``sweep`` at start-up and then every ``every``; one run at a time."""

    def __init__(self, sweep: Callable[[], Awaitable[object]], every: timedelta) -> None:
        if every <= timedelta(0):
            raise ValueError("the sweep interval must be positive")
        self._sweep = sweep
        self._current: asyncio.Task[object] | None = None
        self.scheduler = AsyncIOScheduler(timezone=TIMEZONE)
        options = {
            # Runs missed while the loop was busy (or the machine asleep) collapse into one,
            # however late: a sweep is cheap and the next one would catch up anyway.
            "coalesce": True,
            "misfire_grace_time": None,
            "max_instances": 1,
        }
        self.scheduler.add_job(
            self._run,
            IntervalTrigger(seconds=every.total_seconds(), timezone=TIMEZONE),
            id=SWEEP_JOB,
            name="reminder sweep",
            **options,
        )
        # No trigger: once, right away — a restart catches up at once instead of waiting.
        self.scheduler.add_job(
            self._run, id=f"{SWEEP_JOB}-at-start", name="reminder sweep at start", **options
        )

    async def _run(self) -> None:
        if self._current is not None:  # the start-up run and the interval overlapped
            return
        self._current = asyncio.current_task()
        try:
            with SWEEP_SECONDS.time():
                await self._sweep()
        except Exception:
            log.exception("scheduler: sweep failed; the next one tries again")
        finally:
            self._current = None

    def start(self) -> None:
        """Start in the running event loop."""
        self.scheduler.start()

    async def stop(self, grace: float = 10.0) -> None:
        """No new runs; let a running sweep finish (or cancel it after ``grace`` seconds — its
        transaction rolls back and the next sweep, in any process, does its work)."""
        if not self.scheduler.running:
            return
        self.scheduler.pause()
        current = self._current
        if current is not None:
            try:
                await asyncio.wait_for(asyncio.shield(current), grace)
            except TimeoutError:
                current.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await current
            except Exception:
                pass  # already logged by _run
        self.scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down in a loop callback: let it run
