"""``mashangyi worker``: the background half of the service, without a web server.

For deployments that keep web and background work apart: the reminder sweeps (on
APScheduler), the outbox delivery loop, kept messages (dialogs/inbox.py: the database's
queue, and the spool folder when it is on this host) and media downloads. Any number of workers and
``serve`` processes may run against one PostgreSQL database: sweeps and deliveries are
guarded there (notices/reminders/, notices/outbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from bot.serve import freeze_start_up_heap
from bot.services import Services
from notices.scheduler import SweepScheduler

log = logging.getLogger("mashangyi.worker")


async def run_worker(services: Services, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (or the task is cancelled), then wind down cleanly."""
    config = services.config
    scheduler = SweepScheduler(
        services.sweeper().run_once, timedelta(minutes=config.reminders.sweep_minutes)
    )
    tasks = [
        asyncio.create_task(
            services.dispatcher().run_forever(stop, config.outbox.poll_seconds),
            name="outbox",
        ),
        asyncio.create_task(services.media_downloader().run_forever(stop), name="media"),
        asyncio.create_task(
            services.push_expander().run_forever(stop, config.outbox.poll_seconds), name="pushes"
        ),
        asyncio.create_task(
            services.inbox().run_forever(stop, config.outbox.poll_seconds), name="inbox"
        ),
    ]
    scheduler.start()
    freeze_start_up_heap()
    try:
        await stop.wait()
    finally:
        stop.set()
        await scheduler.stop()
        _, late = await asyncio.wait(tasks, timeout=10)
        for task in late:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
