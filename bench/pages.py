"""The public pages under load: p50/p95/p99 of a topic's page and of the lists, with 1,000
and with 100,000 publicized topics on PostgreSQL, open-loop.

    .venv/bin/python bench/pages.py                      # both cases, about 3 minutes
    .venv/bin/python bench/pages.py --topics 100000 --rate 40 --seconds 30

Needs PostgreSQL on 127.0.0.1:5432 (user ``postgres``). Works in its own database
``bench_pages`` (created if missing; its schema dropped and migrated afresh each case).
Seeding is ``COPY`` through asyncpg.

**Data.** 1,711 rooms (1 city, 10 districts, 100 towns, 1,600 villages). Topics, all
publicized, in random villages, published over the year before; a fifth with results
published. Each topic has its history (submit → publish, five events; results ones eight
more), and every tenth topic has 12 suggestions (two held), 30 likes and 5 follows.

**Load.** The app (``create_app`` with ``build_services``, no outbox loops) runs in a
process of its own; this process sends requests at a fixed rate whatever the answers do
(open loop: the latency of each is counted from the moment it was scheduled, so queueing
shows), for ``--seconds`` after a warm-up; before that, ``SEQUENTIAL`` requests of each kind
one at a time (the service time, without any queue: columns "alone"). Every request is
one of (in turn): a random topic's page; the city-wide list; a district's, a town's, a
village's list (random); page 2 of a district's list (the cursor taken from its first
page); 码上查情 city-wide; a search by one word within a town.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
HOST = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "bench_pages"
URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DATABASE}"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
DISTRICTS, TOWNS_PER_DISTRICT, VILLAGES_PER_TOWN = 10, 10, 16
PUBLIC = ["publicized", "researching", "meeting_scheduled", "outcome_review", "outcome_approved"]
WORDS = ["路灯", "积水", "停车", "垃圾", "噪音", "绿化", "健身", "道路"]
KINDS = ["topic", "city", "district", "town", "village", "district p2", "results", "search"]
#: Requests of each kind sent one at a time before the load (the service time, no queue).
SEQUENTIAL = 40


async def reset() -> None:
    admin = await asyncpg.connect(f"{HOST}/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(f"{HOST}/{DATABASE}")
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    await upgrade(URL)


async def seed(total: int) -> dict[str, list[str]]:
    """Rooms, people, topics and their public parts; returns what the load asks for."""
    rng = random.Random(12)
    conn = await asyncpg.connect(f"{HOST}/{DATABASE}")
    try:
        rooms: list[tuple] = [(1, "CITY", "市议事室", "city", None, NOW, NOW)]
        districts, towns, villages = [], [], []
        next_id = 2
        for d in range(DISTRICTS):
            districts.append(f"D{d}")
            rooms.append((next_id, f"D{d}", f"{d}区议事室", "district", 1, NOW, NOW))
            parent_d, next_id = next_id, next_id + 1
            for t in range(TOWNS_PER_DISTRICT):
                towns.append(f"D{d}T{t}")
                rooms.append((next_id, f"D{d}T{t}", f"{d}-{t}镇议事室", "town", parent_d, NOW, NOW))
                parent_t, next_id = next_id, next_id + 1
                for v in range(VILLAGES_PER_TOWN):
                    villages.append((next_id, f"D{d}T{t}V{v}"))
                    rooms.append(
                        (next_id, f"D{d}T{t}V{v}", f"{d}-{t}-{v}村议事室", "village",
                         parent_t, NOW, NOW)
                    )  # fmt: skip
                    next_id += 1
        await conn.copy_records_to_table(
            "rooms",
            records=rooms,
            columns=["id", "code", "name", "level", "parent_id", "created_at", "updated_at"],
        )
        people = [(i, f"居民{i}", NOW) for i in range(1, 2001)]
        await conn.copy_records_to_table(
            "people", records=people, columns=["id", "display_name", "created_at"]
        )
        topics, events, suggestions, likes, follows = [], [], [], [], []
        numbers = []
        year = 365 * 24 * 3600
        for i in range(1, total + 1):
            room_id, _ = rng.choice(villages)
            published = NOW - timedelta(seconds=rng.randrange(year))
            results = rng.random() < 0.2
            state = "results_published" if results else rng.choice(PUBLIC)
            number = f"B-2026-{i:07d}"
            numbers.append(number)
            facts = {}
            if results:
                facts["approve_outcome"] = {
                    "implementer": "镇城管科", "measures": "立项施工", "due": "2027-06-30"
                }  # fmt: skip
            title = f"{rng.choice(WORDS)}问题{i}"
            topics.append(
                (i, number, room_id, "public", title, "背景说明" * 20, rng.randrange(1, 2001),
                 state, published, None, json.dumps(facts, ensure_ascii=False), 0,
                 published - timedelta(days=7), published, published,
                 published + timedelta(days=30) if results else None)
            )  # fmt: skip
            actions = ["submit", "screen_accept", "approve", "publish"]
            if results:
                actions += ["plan_research", "record_findings", "schedule_meeting",
                            "record_meeting", "approve_outcome", "publish_results",
                            "record_progress", "record_progress"]  # fmt: skip
            for seq, action in enumerate(actions, 1):
                fields = {"note": "进展"} if action == "record_progress" else {}
                events.append(
                    (i, seq, 1, "convener", action, None, state, room_id,
                     json.dumps(fields, ensure_ascii=False), published)
                )  # fmt: skip
            if i % 10 == 0:
                for n in range(12):
                    status = "held" if n < 2 else "visible"
                    suggestions.append(
                        (f"b{i}-{n}", i, 1 + n, "一条建议" * 5, status, 0, False, published)
                    )
                likes += [(1 + n, i, True, published, published) for n in range(30)]
                follows += [(1 + n, i, published) for n in range(5)]
        await conn.copy_records_to_table(
            "topics",
            records=topics,
            columns=["id", "number", "room_id", "source", "title", "background", "submitter_id",
                     "state", "step_started_at", "review_due_at", "facts", "version",
                     "created_at", "updated_at", "published_at", "results_published_at"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "topic_events",
            records=events,
            columns=["topic_id", "seq", "actor_id", "actor_role", "action", "from_state",
                     "to_state", "room_id", "fields", "at"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "suggestions",
            records=suggestions,
            columns=["key", "topic_id", "person_id", "body", "status", "reports",
                     "hidden_by_reports", "created_at"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "likes", records=likes,
            columns=["person_id", "topic_id", "active", "created_at", "updated_at"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "follows", records=follows, columns=["person_id", "topic_id", "created_at"]
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return {
        "numbers": numbers,
        "districts": districts,
        "towns": towns,
        "villages": [code for _, code in villages],
    }


SERVE = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from aiohttp import web
from bot.config import load_config
from bot.services import build_services
from bot.web import create_app
from workflow.clock import FixedClock
from datetime import datetime
config = Path({config!r})
services = build_services(load_config(config, env={{}}),
                          clock=FixedClock(datetime.fromisoformat({now!r})))
web.run_app(create_app(services, run_outbox=False), host="127.0.0.1", port={port},
            print=None, access_log=None)
"""


def serve(port: int, workdir: Path) -> subprocess.Popen:
    config = workdir / "bench-pages.toml"
    config.write_text(
        f'[database]\nurl = "{URL}"\n[server]\npublic_base_url = "https://bench.test"\n'
        '[telegram]\nbot_username = "bench_bot"\n',
        "utf-8",
    )
    script = SERVE.format(root=str(ROOT), config=str(config), now=NOW.isoformat(), port=port)
    return subprocess.Popen([sys.executable, "-c", script], cwd=workdir)


async def wait_ready(port: int, proc: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status in (200, 503):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("server did not start")


async def load(
    port: int, data: dict[str, list[str]], rate: float, seconds: float, warmup: float
) -> dict[str, list[float]]:
    """Requests at ``rate`` per second, open loop; latencies (ms) by kind after warm-up."""
    rng = random.Random(5)
    base = f"http://127.0.0.1:{port}"
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    alone: dict[str, list[float]] = {kind: [] for kind in KINDS}
    errors: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
        # Page 2 of each district: the cursor from its first page (as a reader follows it).
        second: dict[str, str] = {}
        for code in data["districts"]:
            async with http.get(f"{base}/topics?room={code}") as response:
                page = await response.text()
            marker = f"/topics?room={code}&amp;after="
            start = page.index(marker) + len(marker)
            second[code] = page[start : page.index('"', start)]

        def url(kind: str) -> str:
            if kind == "topic":
                return f"/t/{rng.choice(data['numbers'])}"
            if kind == "city":
                return "/topics"
            if kind in ("district", "town", "village"):
                return f"/topics?room={rng.choice(data[kind + 's'])}"
            if kind == "district p2":
                code = rng.choice(data["districts"])
                return f"/topics?room={code}&after={second[code]}"
            if kind == "results":
                return "/results"
            return f"/topics?room={rng.choice(data['towns'])}&q={rng.choice(WORDS)}"

        async def one(kind: str, path: str, scheduled: float, counted: bool) -> None:
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            async with http.get(base + path) as response:
                await response.read()
                if response.status != 200:
                    errors.append(f"{response.status} {path}")
            if counted:
                latencies[kind].append((time.perf_counter() - scheduled) * 1000)

        # Service time first: one request at a time, each kind in turn (no queueing at all).
        for n in range(SEQUENTIAL * len(KINDS)):
            kind = KINDS[n % len(KINDS)]
            start = time.perf_counter()
            async with http.get(base + url(kind)) as response:
                await response.read()
            alone[kind].append((time.perf_counter() - start) * 1000)

        began = time.perf_counter()
        total = int((warmup + seconds) * rate)
        tasks = []
        for n in range(total):
            kind = KINDS[n % len(KINDS)]
            at = began + n / rate
            tasks.append(asyncio.create_task(one(kind, url(kind), at, at - began >= warmup)))
        await asyncio.gather(*tasks)
    if errors:
        print(f"  {len(errors)} errors, e.g. {errors[:3]}")
    return {**latencies, **{f"{k} alone": v for k, v in alone.items()}}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


async def case(total: int, args: argparse.Namespace, workdir: Path) -> dict[str, list[float]]:
    await reset()
    began = time.perf_counter()
    data = await seed(total)
    print(f"  seeded {total:,} topics in {time.perf_counter() - began:.0f} s", flush=True)
    proc = serve(args.port, workdir)
    try:
        await wait_ready(args.port, proc)
        return await load(args.port, data, args.rate, args.seconds, args.warmup)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, nargs="*", default=[1000, 100_000])
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8093)
    args = parser.parse_args()
    workdir = ROOT / "var" / "bench-pages"
    workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for total in args.topics:
        print(
            f"case: {total:,} topics, {args.rate:g} requests/s for {args.seconds:g} s", flush=True
        )
        results[total] = asyncio.run(case(total, args, workdir))
    print("\n| page | topics | alone p50 | alone p95 | load requests | p50 ms | p95 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        for total, latencies in results.items():
            values, alone = latencies[kind], latencies[f"{kind} alone"]
            print(
                f"| {kind} | {total:,} | {statistics.median(alone):.1f} | "
                f"{pct(alone, 0.95):.1f} | {len(values)} | {statistics.median(values):.1f} | "
                f"{pct(values, 0.95):.1f} | {pct(values, 0.99):.1f} |"
            )


if __name__ == "__main__":
    main()
