"""The implementation choices the reminder sweep's speed rests on, checked one by one.

    .venv/bin/python bench/checks.py                  # a temporary SQLite database
    .venv/bin/python bench/checks.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/<yours>

A PostgreSQL database given is emptied (schema ``public`` dropped) and migrated afresh. Each
choice was measured in bench/sweep.py (bench/README.md); none of them is behaviour anyone sees,
so they are not in the test suite, where they used to be pinned. A change that undoes one
shows here first, then in the sweep's times. Prints one row per check; exit status 1 when one
does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import load_config
from bot.serve import serve
from bot.services import build_services
from bot.worker import run_worker
from notices.reminders import Reminder, Submitter, Sweeper
from storage.db import is_sqlite, make_engine, make_session_factory
from storage.migrate import upgrade
from workflow.clock import CHINA, FixedClock
from workflow.workdays import WorkdayCalendar

#: The tables a sweep inserts into (migrations 0006 and 0009 took their foreign keys).
SWEEP_WRITES = ("reminders_sent", "outbox_messages")
#: A working Tuesday in office hours.
MOMENT = datetime(2026, 2, 24, 10, tzinfo=CHINA)
SAFETY = 30.0  # seconds; reached only when a check cannot finish

#: (what is expected, what was found, whether it holds)
Check = Callable[[str, Path], Awaitable[tuple[str, str, bool]]]


async def no_foreign_keys(url: str, _tmp: Path) -> tuple[str, str, bool]:
    """Each row's check would be planned afresh under the sweep's ``force_custom_plan``:
    the outbox inserts took 2.5 times as long."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            keys = await conn.run_sync(
                lambda sync: {t: inspect(sync).get_foreign_keys(t) for t in SWEEP_WRITES}
            )
    finally:
        await engine.dispose()
    found = ", ".join(f"{t}→{k['referred_table']}" for t, ks in keys.items() for k in ks)
    return "none", found or "none", not found


async def kinds_side_by_side(url: str, _tmp: Path) -> tuple[str, str, bool]:
    """On PostgreSQL the server inserts one kind's rows while this process renders the
    next's (about a sixth off the heaviest sweep); SQLite has one writer."""
    events: list[str] = []
    second_started = asyncio.Event()

    async def first(session: Any, sweep: Any) -> list[Any]:
        events.append("a")
        with contextlib.suppress(TimeoutError):  # waits in vain when kinds run in turn
            await asyncio.wait_for(second_started.wait(), 2)
        events.append("a done")
        return []

    async def second(session: Any, sweep: Any) -> list[Any]:
        events.append("b")
        second_started.set()
        return []

    kinds = [Reminder("a", first, Submitter()), Reminder("b", second, Submitter())]
    engine = make_engine(url)
    try:
        sweeper = Sweeper(
            make_session_factory(engine), FixedClock(MOMENT), WorkdayCalendar(), reminders=kinds
        )
        report = await sweeper.run_once()
    finally:
        await engine.dispose()
    expected = "one by one" if is_sqlite(url) else "side by side"
    if report.failed:
        return expected, f"failed: {', '.join(report.failed)}", False
    found = "side by side" if events == ["a", "b", "a done"] else "one by one"
    return expected, found, found == expected


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


async def serve_freezes(url: str, tmp: Path) -> tuple[str, str, bool]:
    """Full collections during a heavy sweep no longer walk what start-up allocated: a
    sixth to a quarter of the sweep."""
    config = tmp / "serve.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', "utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gc.unfreeze()
    task = asyncio.create_task(serve(load_config(config, env={}), "127.0.0.1", port))
    try:
        for _ in range(int(SAFETY * 10)):
            if _answers(port) or task.done():
                break
            await asyncio.sleep(0.1)
        for _ in range(50):  # listening comes a moment before the rest of the start-up
            if gc.get_freeze_count() or task.done():
                break
            await asyncio.sleep(0.1)
        frozen = gc.get_freeze_count()
    finally:
        task.cancel()  # not SIGTERM: should serve not get that far, it would kill this process
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, SAFETY)
        gc.unfreeze()
    return "frozen", f"{frozen:,} objects frozen" if frozen else "nothing frozen", frozen > 0


async def worker_freezes(url: str, tmp: Path) -> tuple[str, str, bool]:
    """As ``serve_freezes``, for ``mashangyi worker``."""
    config = tmp / "worker.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', "utf-8")
    services = build_services(load_config(config, env={}), FixedClock(MOMENT))
    stop = asyncio.Event()
    gc.unfreeze()
    task = asyncio.create_task(run_worker(services, stop))
    for _ in range(100):  # the worker freezes once its loops have started
        if gc.get_freeze_count() or task.done():
            break
        await asyncio.sleep(0.05)
    frozen = gc.get_freeze_count()
    stop.set()
    try:
        await asyncio.wait_for(task, SAFETY)
    finally:
        await services.close()
        gc.unfreeze()
    return "frozen", f"{frozen:,} objects frozen" if frozen else "nothing frozen", frozen > 0


CHECKS: list[tuple[str, Check]] = [
    ("no foreign keys on the tables a sweep writes", no_foreign_keys),
    ("a sweep's kinds: side by side on PostgreSQL, one by one on SQLite", kinds_side_by_side),
    ("serve freezes its start-up heap (gc.freeze)", serve_freezes),
    ("worker freezes its start-up heap (gc.freeze)", worker_freezes),
]


async def empty_postgres(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL to empty and use (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mashangyi-checks-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'checks.db'}"
        if not is_sqlite(url):
            await empty_postgres(url)
        await upgrade(url)
        rows = []
        for name, check in CHECKS:
            expected, found, holds = await check(url, Path(tmp))
            rows.append((name, expected, found, "yes" if holds else "NO"))
    database = "SQLite" if is_sqlite(url) else "PostgreSQL"
    print(f"{database}\n\n| check | expected | found | holds |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0 if all(row[3] == "yes" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
