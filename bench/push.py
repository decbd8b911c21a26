"""A result pushed to many followers through the fake Bot API enforcing Telegram's limits.

    .venv/bin/python bench/push.py                                  # 100,000 followers
    .venv/bin/python bench/push.py --followers 10000 --speed 10 --restart-at 0.5

Needs PostgreSQL on 127.0.0.1:5432 (user postgres); works in its own database
(``bench_push``: created if missing, its schema dropped and migrated afresh). With
``--redis`` (default ``redis://127.0.0.1:6379/13``; ``--redis ''`` for none) the limiter is
the shared one (``RedisLimiter``), as with several workers.

The processes: this one (seeds, publishes the result, watches), the fake Bot API
(``tests/fakes/telegram_api.py`` with ``RateLimits``: 429 with retry_after past 30 messages a
second overall or one a second per chat) and the workers, each running what ``mashangyi
worker`` runs for pushes: the push expander and ``--dispatchers`` outbox dispatchers, the
Telegram sender with its limiter. Time in the fake and the limiter runs ``--speed`` times
faster (30 × speed messages a real second): the optimum is followers / (30 × speed) real
seconds.
``--workers`` processes share the limits (through Redis). ``--restart-at 0.5`` kills a
worker (SIGKILL) once half are delivered and starts a new one under the same worker
identity, as a restarted machine would.

Reported: delivered (distinct chats that got the message), duplicated (messages beyond one
per chat), lost (chats that got nothing), 429s, and the elapsed time from the commit of
``publish_results`` to the last message's arrival at the fake, against the optimum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.telegram_api import TOKEN, FakeBotAPI, RateLimits  # noqa: E402

HOST = "postgresql://postgres@127.0.0.1:5432"
WORKER_ID = "bench-push-worker"
CHAT_BASE = 10_000_000


# -- the fake, in its own process ---------------------------------------------------------


class CountingFake(FakeBotAPI):
    """The fake Bot API, counting deliveries instead of keeping every call (100,000 calls
    with their parameters would be most of its memory and time)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.delivered: Counter[int] = Counter()
        self.last_ok = 0.0

    async def _answer(
        self, method: str, params: dict[str, Any], response: web.Response
    ) -> web.Response:
        if method == "sendMessage":
            if response.status == 200:
                self.delivered[params["chat_id"]] += 1
                self.last_ok = time.monotonic()
            return response
        return await super()._answer(method, params, response)

    def _api_benchNow(self, params: dict[str, Any]) -> web.Response:
        return web.json_response({"ok": True, "result": time.monotonic()})

    def _api_benchStats(self, params: dict[str, Any]) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "chats": len(self.delivered),
                    "messages": sum(self.delivered.values()),
                    "limited": len(self.limited),
                    "last_ok": self.last_ok,
                },
            }
        )


async def run_fake(speed: float) -> None:
    fake = CountingFake(limits=RateLimits(speed=speed))
    await fake.start()
    print(fake.base_url, flush=True)
    await asyncio.Event().wait()


# -- the worker, in its own process -------------------------------------------------------


async def run_worker(
    config_path: str, speed: float, dispatchers: int, redis_url: str, worker_id: str
) -> None:
    from redis.asyncio import Redis

    from bot.config import load_config
    from bot.services import build_services
    from bot.telegram import TelegramSender
    from bot.telegram.limits import Limits, LocalLimiter, RedisLimiter
    from notices.outbox import reclaim

    services = build_services(load_config(config_path, env={}))
    services.worker_id = worker_id
    taken = await reclaim(services.sessions, worker_id)  # a killed predecessor's claims
    if taken:
        print(f"worker: took back {taken} rows", file=sys.stderr, flush=True)
    sender = services.senders["telegram"]
    assert isinstance(sender, TelegramSender)
    limits = Limits(speed=speed)
    if redis_url:
        prefix = os.environ["BENCH_PREFIX"]
        sender.limiter = RedisLimiter(Redis.from_url(redis_url), limits, prefix=prefix)
    else:
        sender.limiter = LocalLimiter(limits, time=time.time)
    Path(config_path).with_name(f"ready-{worker_id}").touch()  # built: the watcher may publish
    stop = asyncio.Event()
    poll = 0.02
    tasks = [asyncio.create_task(services.push_expander().run_forever(stop, 0.2))]
    tasks += [
        asyncio.create_task(services.dispatcher().run_forever(stop, poll))
        for _ in range(dispatchers)
    ]
    await asyncio.gather(*tasks)


# -- the orchestration ----------------------------------------------------------------------


async def reset(database: str) -> str:
    from storage.migrate import upgrade

    admin = await asyncpg.connect(f"{HOST}/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
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


async def api(session: aiohttp.ClientSession, base: str, method: str) -> Any:
    async with session.post(f"{base}{TOKEN}/{method}") as response:
        return (await response.json())["result"]


async def outbox_counts(database: str) -> dict[str, int]:
    conn = await asyncpg.connect(f"{HOST}/{database}")
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) FROM outbox_messages WHERE kind LIKE 'push.%' GROUP BY 1"
        )
        jobs = await conn.fetchval("SELECT count(*) FROM push_jobs WHERE done_at IS NULL")
    finally:
        await conn.close()
    return {**{r["status"]: r["count"] for r in rows}, "open jobs": jobs}


def start_worker(
    args: argparse.Namespace, config: Path, env: dict[str, str], number: int
) -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", str(config), "--speed", str(args.speed)]
    command += ["--dispatchers", str(args.dispatchers), "--redis", args.redis]
    command += ["--worker-id", f"{WORKER_ID}-{number}"]
    return subprocess.Popen(command, env=env)


async def main(args: argparse.Namespace) -> None:
    from bot.config import load_config
    from bot.services import build_services
    from tests.world import build_world
    from workflow.clock import SystemClock
    from workflow.lifecycle import State

    url = await reset(args.database)
    fake = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything runs)
        [sys.executable, __file__, "--fake", "--speed", str(args.speed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    workers: list[subprocess.Popen] = []
    try:
        assert fake.stdout is not None
        base = fake.stdout.readline().strip()
        config = Path(tempfile.mkdtemp()) / "bench.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n'
            '[server]\npublic_base_url = "https://bot.example.org"\n'
            f'[telegram]\nbot_token = "{TOKEN}"\nbase_url = "{base}"\n'
            f'[media]\ndir = "{config.parent / "media"}"\n'
            "[outbox]\nbatch_size = 50\npoll_seconds = 0.02\n"
            f"[pushes]\nchunk_size = {args.chunk}\n",
            "utf-8",
        )
        services = build_services(load_config(config, env={}), clock=SystemClock())
        world = await build_world(services.sessions, services.clock)  # type: ignore[arg-type]
        world.lifecycle = services.lifecycle
        topic = await world.at(State.OUTCOME_APPROVED)
        await services.push_expander().run_once()  # the earlier pushes: nobody followed yet
        started = time.perf_counter()
        conn = await asyncpg.connect(f"{HOST}/{args.database}")
        try:
            first = await conn.fetchval("SELECT coalesce(max(id), 0) + 1 FROM people")
            now = datetime.now(UTC)
            ids = range(first, first + args.followers)
            await conn.copy_records_to_table(
                "people",
                records=[(i, "", now) for i in ids],
                columns=["id", "display_name", "created_at"],
            )
            await conn.copy_records_to_table(
                "channel_identities",
                records=[(i, "telegram", str(CHAT_BASE + i), now) for i in ids],
                columns=["person_id", "channel", "external_id", "created_at"],
            )
            await conn.copy_records_to_table(
                "follows",
                records=[(i, topic.id, now) for i in ids],
                columns=["person_id", "topic_id", "created_at"],
            )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        print(f"seeded {args.followers:,} followers in {time.perf_counter() - started:.1f} s")

        env = dict(os.environ, BENCH_PREFIX=f"mashangyi-bench:{secrets.token_hex(6)}:")
        # The workers run before the result is published, as they do in service.
        workers += [start_worker(args, config, env, n) for n in range(args.workers)]
        while len(list(config.parent.glob("ready-*"))) < args.workers:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # (another process's file: no event to wait on)
        async with aiohttp.ClientSession() as http:
            t0 = await api(http, base, "benchNow")
            await world.apply(topic, "publish_results", world.person("V1", "convener"))
            optimum = args.followers / (30 * args.speed)
            deadline = time.monotonic() + 3 * optimum + 120
            restarted, shown = False, time.monotonic()
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                stats = await api(http, base, "benchStats")
                if args.progress and time.monotonic() - shown >= 60:
                    shown = time.monotonic()
                    print(f"  {stats['chats']:,} delivered", flush=True)
                if args.restart_at and not restarted:
                    if stats["chats"] >= args.restart_at * args.followers:
                        workers[0].send_signal(signal.SIGKILL)  # mid-send, mid-chunk
                        workers[0].wait()
                        print(f"killed worker 0 at {stats['chats']:,} delivered", flush=True)
                        workers[0] = start_worker(args, config, env, 0)
                        restarted = True
                if stats["chats"] >= args.followers:
                    counts = await outbox_counts(args.database)
                    if not counts.get("pending") and not counts.get("sending"):
                        break
            await asyncio.sleep(1.0)  # anything sent twice arrives now, or not at all
            stats = await api(http, base, "benchStats")
        counts = await outbox_counts(args.database)
        await services.close()
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait()
        fake.kill()
        fake.wait()
    elapsed = stats["last_ok"] - t0
    delivered = stats["chats"]
    print()
    print(
        "| followers | speed | workers × dispatchers | limiter | restart | delivered | duplicated "
        "| lost | 429s | elapsed | optimum | ratio |"
    )
    print("|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.followers:,} | {args.speed:g}× | {args.workers} × {args.dispatchers} "
        f"| {'Redis' if args.redis else 'local'} "
        f"| {'at ' + format(args.restart_at, '.0%') if args.restart_at else '–'} "
        f"| {delivered:,} | {stats['messages'] - delivered:,} | {args.followers - delivered:,} "
        f"| {stats['limited']:,} | {elapsed:.1f} s | {optimum:.1f} s | {elapsed / optimum:.3f} |"
    )
    print(f"outbox rows by status: {json.dumps(counts)}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, default=100_000)
    parser.add_argument("--speed", type=float, default=10.0, help="time scale of the limits")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--dispatchers", type=int, default=2, help="per worker")
    parser.add_argument("--chunk", type=int, default=500, help="people per expansion")
    parser.add_argument("--restart-at", type=float, default=0.0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--database", default="bench_push")
    parser.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--worker-id", default=WORKER_ID, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    if options.fake:
        asyncio.run(run_fake(options.speed))
    elif options.worker:
        work = run_worker(
            options.worker, options.speed, options.dispatchers, options.redis, options.worker_id
        )
        if os.environ.get("BENCH_PROFILE"):  # where a worker's time goes, on SIGTERM
            import cProfile

            profile = cProfile.Profile()
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            try:
                profile.runcall(asyncio.run, work)
            finally:
                profile.dump_stats(os.environ["BENCH_PROFILE"])
        else:
            asyncio.run(work)
    else:
        asyncio.run(main(options))
