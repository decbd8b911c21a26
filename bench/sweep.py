"""Reminder sweep time against the number of topics and the number of overdue ones.

    .venv/bin/python bench/sweep.py                      # the four default cases
    .venv/bin/python bench/sweep.py --cases 1000000:10000 --explain

Needs PostgreSQL on 127.0.0.1:5432 (user postgres). Works in its own database (``bench`` by
default, created if missing, its schema dropped and migrated afresh), so the test database is
not disturbed. Seeding uses COPY; a 1,000,000-topic case takes about half a minute to seed.

Per case it reports:
- ``query``: the due query alone (``workflow.overdue.overdue_query``);
- ``first``: the first sweep of a working day — every overdue step's responsible people are
  nudged, every submitter told, the escalated steps listed to the district supervisors: the
  heavy sweep, writing about two outbox messages per overdue topic;
- ``again``: the same day ten minutes later — all of it already given (the steady state of
  every sweep but the first each day);
- ``next day``: the next working day — nudges again, the once-only reminders not.

With ``--floor`` each case is measured a second time, interleaved with the first run sweep
by sweep, with the messages rendered through Jinja's internals (``FloorRenderer``: what
the sweeper did until issue 11, the least rendering can cost): a yardstick in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from jinja2 import Template
from jinja2.runtime import new_context
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.serve import freeze_start_up_heap
from notices.reminders import Sweep, Sweeper
from notices.reminders import sweeper as reminders
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from workflow.clock import CHINA, FixedClock
from workflow.lifecycle import CLOCKED_STATES, State
from workflow.overdue import overdue_query
from workflow.workdays import WorkdayCalendar

HOST = "postgresql://postgres@127.0.0.1:5432"
#: Wednesday 2026-03-18, 10:00 China time; the next day is a working day too.
TODAY = datetime(2026, 3, 18, 10, tzinfo=CHINA)
NEXT_DAY = datetime(2026, 3, 19, 10, tzinfo=CHINA)
DISTRICTS, TOWNS_PER_DISTRICT, VILLAGES_PER_TOWN = 10, 10, 16
RESIDENTS = 50_000
CALENDAR = WorkdayCalendar.load()
NOT_CLOCKED = [s for s in State if s not in CLOCKED_STATES]
SWEEPER_RENDERER = reminders._Renderer


class FloorRenderer(SWEEPER_RENDERER):
    """The sweeper's renderer as it was until issue 11: the compiled template's root render
    function on a context made by ``jinja2.runtime.new_context`` (Jinja's internals, not a
    supported API), the values shared instead of copied. A yardstick only."""

    def __init__(self, template: Template, sweep: Sweep) -> None:
        super().__init__(template, sweep)
        self.globals = dict(template.globals)  # once per sweep: a ChainMap is slow to iterate

    def __call__(self, values: Mapping[str, Any]) -> str:
        template = self.template
        context = new_context(
            template.environment,
            template.name,
            template.blocks,
            {**self.globals, **values, **self.common},
            shared=True,
        )
        return "".join(template.root_render_func(context)).strip()


def _windows() -> list[tuple[datetime, datetime]]:
    """(step start, due) pairs whose window ended before TODAY: last days spread over the
    fifteen working days before it, so some steps are escalated and some not yet."""
    pairs = []
    day = TODAY.date() - timedelta(days=40)
    while day < TODAY.date():
        if CALENDAR.is_workday(day):
            start = datetime.combine(day, datetime.min.time(), tzinfo=CHINA) + timedelta(hours=10)
            due = CALENDAR.due_at(start, 5)
            if due <= TODAY and (TODAY.date() - due.date()).days <= 21:
                pairs.append((start, due))
        day += timedelta(days=1)
    return pairs


async def reset(database: str) -> str:
    admin = await asyncpg.connect(f"{HOST}/postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(f"{HOST}/{database}")
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    await upgrade(url)
    return url


async def seed_people_and_rooms(conn: asyncpg.Connection) -> tuple[list[int], list[int]]:
    """Rooms (city → districts → towns → villages), a convener and a Party secretary in every
    town and village, a supervisor per district, residents; everyone has a chat identity.
    Returns the rooms topics live in and the residents' ids."""
    now = TODAY
    rooms: list[tuple] = [(1, "CITY", "市", "city", None, now, now)]
    next_id = 2
    districts, towns, villages = [], [], []
    for d in range(DISTRICTS):
        districts.append(next_id)
        rooms.append((next_id, f"D{d}", f"区{d}", "district", 1, now, now))
        parent_d, next_id = next_id, next_id + 1
        for t in range(TOWNS_PER_DISTRICT):
            towns.append(next_id)
            rooms.append((next_id, f"D{d}T{t}", f"镇{d}-{t}", "town", parent_d, now, now))
            parent_t, next_id = next_id, next_id + 1
            for v in range(VILLAGES_PER_TOWN):
                villages.append(next_id)
                rooms.append(
                    (next_id, f"D{d}T{t}V{v}", f"村{d}-{t}-{v}", "village", parent_t, now, now)
                )
                next_id += 1
    await conn.copy_records_to_table(
        "rooms",
        records=rooms,
        columns=["id", "code", "name", "level", "parent_id", "created_at", "updated_at"],
    )
    staff = [(r, "convener") for r in towns + villages] + [(r, "party") for r in towns + villages]
    staff += [(r, "supervisor") for r in districts]
    people = [(i + 1, f"p{i + 1}", now) for i in range(len(staff) + RESIDENTS)]
    await conn.copy_records_to_table(
        "people", records=people, columns=["id", "display_name", "created_at"]
    )
    await conn.copy_records_to_table(
        "channel_identities",
        records=[(pid, "console", f"c{pid}", now) for pid, _, _ in people],
        columns=["person_id", "channel", "external_id", "created_at"],
    )
    await conn.copy_records_to_table(
        "role_grants",
        records=[(i + 1, room, role, now) for i, (room, role) in enumerate(staff)],
        columns=["person_id", "room_id", "role", "granted_at"],
    )
    residents = list(range(len(staff) + 1, len(staff) + RESIDENTS + 1))
    for table in ("rooms", "people"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    return towns + villages, residents


async def seed_topics(
    conn: asyncpg.Connection, total: int, overdue: int, rooms: list[int], residents: list[int]
) -> None:
    """``overdue`` topics past due in clocked states, 2% of the rest clocked but not yet due,
    everything else in states without a clock (no review_due_at)."""
    await conn.execute(
        "TRUNCATE reminders_sent, outbox_messages, topic_events, attachments, topics "
        "RESTART IDENTITY CASCADE"
    )
    rng = random.Random(7)
    windows = _windows()
    clocked = sorted(CLOCKED_STATES)
    not_yet = CALENDAR.due_at(TODAY, 5)
    batch: list[tuple] = []
    columns = [
        "number", "room_id", "source", "title", "background", "submitter_id", "state",
        "step_started_at", "review_due_at", "facts", "version", "created_at", "updated_at",
    ]  # fmt: skip
    late = set(rng.sample(range(total), overdue))  # scattered over the table, as in life
    for i in range(total):
        if i in late:
            state = clocked[i % len(clocked)]
            started, due = windows[i % len(windows)]
        elif rng.random() < 0.02:
            state, started, due = clocked[i % len(clocked)], TODAY, not_yet
        else:
            state, started, due = NOT_CLOCKED[i % len(NOT_CLOCKED)], TODAY, None
        batch.append(
            (
                f"B-{i:07d}", rng.choice(rooms), "public", f"议题{i}", "背景",
                rng.choice(residents), str(state), started, due, "{}", 0, started, started,
            )
        )  # fmt: skip
        if len(batch) == 100_000:
            await conn.copy_records_to_table("topics", records=batch, columns=columns)
            batch = []
    if batch:
        await conn.copy_records_to_table("topics", records=batch, columns=columns)
    await conn.execute("VACUUM ANALYZE")


async def explain(conn: asyncpg.Connection) -> str:
    statement = overdue_query(TODAY.astimezone(UTC))
    sql = str(
        statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )
    rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
    return "\n".join(r[0] for r in rows)


async def measure(url: str, overdue: int, repeats: int, floor: bool) -> dict[str, float]:
    """Best of ``repeats`` for each kind of sweep (the machine may be shared); with ``floor``
    the same again with ``FloorRenderer`` (keys "floor first"…), alternating run by run."""
    engine = make_engine(url, pool_size=5)
    sessions = make_session_factory(engine)
    clock = FixedClock(TODAY)
    sweeper = Sweeper(sessions, clock, CALENDAR)
    freeze_start_up_heap()  # as `serve` and `worker` do once set up
    best: dict[str, float] = {}

    async def timed(name: str, moment: datetime) -> None:
        clock.set(moment)
        start = time.perf_counter()
        report = await sweeper.run_once()
        elapsed = time.perf_counter() - start
        assert not report.failed, report
        best[name] = min(best.get(name, elapsed), elapsed)
        best[f"{name} messages"] = sum(report.sent.values())

    try:
        for _ in range(repeats):
            async with sessions() as session:
                start = time.perf_counter()
                found = (await session.exec(overdue_query(TODAY))).all()
                elapsed = time.perf_counter() - start
                best["query"] = min(best.get("query", elapsed), elapsed)
            assert len(found) == overdue, (len(found), overdue)
        for n in range(repeats):
            runs = [("", SWEEPER_RENDERER), ("floor ", FloorRenderer)] if floor else [("", None)]
            for prefix, renderer in runs if n % 2 == 0 else runs[::-1]:
                if renderer is not None:
                    reminders._Renderer = renderer  # type: ignore[misc]
                async with engine.begin() as conn:  # forget what was given: a fresh day again
                    await conn.execute(text("TRUNCATE reminders_sent, outbox_messages"))
                await timed(f"{prefix}first", TODAY)
                for minutes in (10, 20, 30):
                    await timed(f"{prefix}again", TODAY + timedelta(minutes=minutes + 30 * n))
                await timed(f"{prefix}next day", NEXT_DAY)
    finally:
        reminders._Renderer = SWEEPER_RENDERER  # type: ignore[misc]
        await engine.dispose()
    return best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="bench")
    parser.add_argument(
        "--cases",
        default="100000:1000,100000:10000,1000000:1000,1000000:10000",
        help="comma-separated TOTAL:OVERDUE",
    )
    parser.add_argument("--explain", action="store_true", help="EXPLAIN the due query per case")
    parser.add_argument("--repeats", type=int, default=2, help="report the best of N runs")
    parser.add_argument(
        "--floor", action="store_true", help="also measure with FloorRenderer, interleaved"
    )
    args = parser.parse_args()
    cases = [tuple(int(x) for x in case.split(":")) for case in args.cases.split(",")]

    url = await reset(args.database)
    conn = await asyncpg.connect(f"{HOST}/{args.database}")
    try:
        rooms, residents = await seed_people_and_rooms(conn)
        print(
            f"{len(rooms)} rooms with topics, {len(residents)} residents; sweep at "
            f"{TODAY:%Y-%m-%d %H:%M} China time",
            flush=True,
        )
        header = (
            f"{'topics':>9} {'overdue':>8} | {'query':>7} | {'first':>7} {'msgs':>6} | "
            f"{'again':>7} | {'next day':>8} {'msgs':>6} | seed"
        )
        print(header, flush=True)
        print("-" * len(header), flush=True)
        plans = []
        for total, overdue in cases:
            start = time.perf_counter()
            await seed_topics(conn, total, overdue, rooms, residents)
            seeded = time.perf_counter() - start
            t = await measure(url, overdue, args.repeats, args.floor)
            for prefix in ("", "floor ") if args.floor else ("",):
                row = (
                    f"{total:>9,} {overdue:>8,} | {t['query'] * 1000:>5.0f}ms | "
                    f"{t[prefix + 'first'] * 1000:>5.0f}ms {t[prefix + 'first messages']:>6.0f} | "
                    f"{t[prefix + 'again'] * 1000:>5.0f}ms | "
                    f"{t[prefix + 'next day'] * 1000:>6.0f}ms "
                    f"{t[prefix + 'next day messages']:>6.0f} | {seeded:.0f}s {prefix}"
                )
                print(row.rstrip(), flush=True)
            if args.floor:
                print(
                    f"{'':>18} | {'/ floor':>7} | {t['first'] / t['floor first']:>7.2f} "
                    f"{'':>6} | {t['again'] / t['floor again']:>7.2f} | "
                    f"{t['next day'] / t['floor next day']:>8.2f}",
                    flush=True,
                )
            if args.explain:
                plans.append((total, overdue, await explain(conn)))
        for total, overdue, plan in plans:
            print(
                f"\nEXPLAIN (ANALYZE, BUFFERS) the due query, {total:,} topics, {overdue:,} overdue"
            )
            print(plan)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
