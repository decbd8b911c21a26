"""Fault drill (issue 10): the real service as a black box, driven the way WeChat and
Telegram drive it, through the faults they and the machine inflict. One row per scenario.

    .venv/bin/python bench/fault_drill.py                       # SQLite, short form (~7 min)
    .venv/bin/python bench/fault_drill.py \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test_drill
    .venv/bin/python bench/fault_drill.py --long               # 60 s outages and overload

Scenarios: ``dup`` (every callback delivered two or three times), ``sigkill`` (kill -9 the
service under load, restart it, keep going), ``botapi`` (the Bot API answers 429/502 for a
while), ``dbdown`` (PostgreSQL only: a proxy in front of it stalls, then refuses, for a
while; /healthz polled), ``overload`` (an open-loop ramp measures the capacity, then twice
that is offered). Column definitions: bench/drill_ledger.py and bench/README.md.

Everything is on 127.0.0.1: ``mashangyi serve`` in a subprocess, configured with a fake
WeChat API and a fake Bot API that run in this process. Works in a temporary directory; a
PostgreSQL database given with --database-url is EMPTIED (schema public dropped) first.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from drill_fakes import TG_TOKEN, FakeBotAPI, FakeWeChat, PostgresProxy
from drill_ledger import Row, account, capacity_of, snapshot, table, transcript, waiting_rows
from drill_traffic import TG_SECRET, WECHAT_TOKEN, Message, Traffic, constant_starts, ramp_starts
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ROOT = Path(__file__).resolve().parents[1]
MASHANGYI = ROOT / ".venv" / "bin" / "mashangyi"
SCENARIOS = ("dup", "sigkill", "botapi", "dbdown", "overload")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``mashangyi serve`` in its own process group, so nothing it starts outlives us."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                MASHANGYI,
                "--config",
                str(self.config),
                "serve",
                "--port",
                str(self.port),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self.process.pid)
        async with aiohttp.ClientSession() as http:
            for _ in range(120):  # 30 s
                if self.process.returncode is not None:
                    raise RuntimeError(f"the service exited at start-up; see {self.log}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    url = f"http://127.0.0.1:{self.port}/healthz"
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status in (200, 503):
                            return
                await asyncio.sleep(0.25)
        raise RuntimeError(f"the service did not answer /healthz within 30 s; see {self.log}")

    async def kill(self, signum: int = signal.SIGKILL) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        _LIVE.discard(process.pid)


#: Process groups still running: killed at exit whatever way the drill ends.
_LIVE: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pid in _LIVE:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


class Drill:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.wechat = FakeWeChat()
        self.telegram = FakeBotAPI()
        self.proxy: PostgresProxy | None = None
        self.service: Service | None = None
        self.engine: AsyncEngine | None = None
        self.traffic: Traffic | None = None
        self.next_chat = 10_000_000
        self.rows: list[Row] = []

    # -- set-up --------------------------------------------------------------------------

    async def setup(self) -> None:
        wechat_url, telegram_url = await self.wechat.start(), await self.telegram.start()
        port = free_port()
        direct = self.args.database_url or f"sqlite+aiosqlite:///{self.workdir / 'drill.db'}"
        service_url = direct
        if self.args.database_url:
            await reset_postgres(direct)
            parts = urlsplit(direct)
            self.proxy = PostgresProxy(parts.port or 5432)
            proxy_port = await self.proxy.start()
            netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy_port}"
            service_url = urlunsplit(parts._replace(netloc=netloc))
        # The drill reads the database directly, never through the proxy.
        self.engine = create_async_engine(direct)
        config = self.workdir / "drill.toml"
        config.write_text(
            f"""
[server]
host = "127.0.0.1"
port = {port}
public_base_url = "http://127.0.0.1:{port}"
secret_key = "{secrets.token_hex(32)}"
[database]
url = "{service_url}"
[wechat]
app_id = "wxdrill000000000001"
app_secret = "drill-secret"
token = "{WECHAT_TOKEN}"
api_base_url = "{wechat_url}"
[telegram]
bot_token = "{TG_TOKEN}"
bot_username = "drill_bot"
webhook_secret = "{TG_SECRET}"
base_url = "{telegram_url}"
[media]
dir = "media"
""",
            encoding="utf-8",
        )
        demo = await asyncio.create_subprocess_exec(
            MASHANGYI,
            "--config",
            str(config),
            "demo",
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        _, errors = await demo.communicate()
        if demo.returncode:
            raise RuntimeError(f"mashangyi demo failed:\n{errors.decode()[-2000:]}")
        self.service = Service(config, port, self.workdir / "service.log")
        await self.service.start()
        self.traffic = await Traffic(port, self.rng).__aenter__()

    async def close(self) -> None:
        if self.service is not None:
            await self.service.kill(signal.SIGTERM)
        if self.traffic is not None:
            await self.traffic.__aexit__()
        for closing in (self.wechat.close(), self.telegram.close()):
            await closing
        if self.proxy is not None:
            await self.proxy.close()
        if self.engine is not None:
            await self.engine.dispose()

    # -- one scenario --------------------------------------------------------------------

    async def load(
        self,
        name: str,
        starts: list[float],
        during: Callable[[], Coroutine[Any, Any, str]] | None = None,
    ) -> tuple[list[Message], float, str]:
        """Run conversations starting at ``starts`` (offsets in seconds), with ``during``
        (a fault) alongside; return the messages, the end of load and the fault's note."""
        assert self.traffic is not None
        first, self.next_chat = self.next_chat, self.next_chat + len(starts)
        traffic = asyncio.ensure_future(self.traffic.run(name, starts, self.args.gap, first))
        note = await during() if during is not None else ""
        messages = await traffic
        return messages, time.monotonic(), note

    async def finish(self, row: Row, messages: list[Message], ended: float) -> Row:
        """Wait for the outbox to drain, then account."""
        assert self.engine is not None
        chats = {m.chat for m in messages}
        deadline = ended + self.args.drain_max
        drained_at: float | None = None
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the database may still be recovering
                if await waiting_rows(self.engine, chats) == 0:
                    drained_at = time.monotonic()
                    break
            await asyncio.sleep(0.5)
        sent = self.wechat.sent + self.telegram.sent
        last_send = max((s.at for s in sent if s.chat in chats), default=ended)
        if drained_at is None:
            row.drain = f">{self.args.drain_max:.0f} s"
        else:
            row.drain = f"{max(0.0, max(drained_at, last_send) - ended):.1f} s"
        shot = await snapshot(self.engine, chats)
        channel_of = {m.chat: m.channel for m in messages}
        row = account(row, messages, sent, shot, channel_of)
        if self.args.transcript:
            print(transcript(messages, sent, shot), *row.details, sep="\n", file=sys.stderr)
        return row

    def starts(self, rate: float, seconds: float) -> list[float]:
        return constant_starts(rate, seconds)

    async def dup(self) -> Row:
        messages, ended, _ = await self.load("dup", self.starts(self.args.rate, self.args.seconds))
        return await self.finish(Row("duplicated deliveries"), messages, ended)

    async def sigkill(self) -> Row:
        assert self.service is not None
        service = self.service

        async def kill() -> str:
            await asyncio.sleep(self.args.seconds * 0.4)
            await service.kill()
            await asyncio.sleep(1.0)
            began = time.monotonic()
            await service.start()
            return f"restarted in {time.monotonic() - began:.1f} s"

        messages, ended, note = await self.load(
            "sigkill", self.starts(self.args.rate, self.args.seconds), kill
        )
        return await self.finish(Row("SIGKILL under load", note=note), messages, ended)

    async def botapi(self) -> Row:
        outage = self.args.outage
        seconds = max(self.args.seconds, outage + 10)

        async def down() -> str:
            await asyncio.sleep(5)
            self.telegram.down_until = time.monotonic() + outage
            await asyncio.sleep(outage)
            return f"{outage:.0f} s of 429/502, {self.telegram.refused} calls refused"

        messages, ended, note = await self.load(
            "botapi", self.starts(self.args.rate, seconds), down
        )
        return await self.finish(Row("Bot API outage", note=note), messages, ended)

    async def dbdown(self) -> Row:
        proxy, outage = self.proxy, self.args.db_outage
        assert proxy is not None
        seconds = max(self.args.seconds, outage + 10)
        polls: list[bool] = []

        async def healthz(until: float) -> None:
            url = f"http://127.0.0.1:{self.service.port}/healthz"  # type: ignore[union-attr]
            async with aiohttp.ClientSession() as http:
                while time.monotonic() < until:
                    began = time.monotonic()
                    ok = False
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                            await r.read()
                            ok = True  # answered (200 or 503) within 1 s
                    polls.append(ok)
                    await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - began)))

        async def down() -> str:
            await asyncio.sleep(5)
            poller = asyncio.ensure_future(healthz(time.monotonic() + outage))
            proxy.set_mode("stall")  # a hung network first: queries hang, nothing errors
            await asyncio.sleep(outage / 2)
            proxy.set_mode("refuse")  # then a server that is down: resets, refusals
            await asyncio.sleep(outage / 2)
            proxy.set_mode("up")
            await poller
            return f"{outage:.0f} s: stalled {outage / 2:.0f} s, then refused"

        messages, ended, note = await self.load(
            "dbdown", self.starts(self.args.rate, seconds), down
        )
        row = Row("database outage", note=note)
        row.healthz = f"{sum(polls)}/{len(polls)}"
        return await self.finish(row, messages, ended)

    async def overload(self) -> Row:
        # Capacity: an open-loop ramp; the highest offered rate (2 s windows by scheduled
        # time) at which every message was answered and the p95 latency stayed under 1 s.
        messages, ended, _ = await self.load(
            "ramp", ramp_starts(self.args.ramp_from, self.args.ramp_to, self.args.ramp_seconds)
        )
        capacity = capacity_of(messages)
        await self.finish(Row("ramp"), messages, ended)  # let the ramp's backlog drain
        rate = max(2.0, 2 * capacity)
        messages, ended, _ = await self.load("overload", self.starts(rate, self.args.seconds))
        row = Row(f"overload {rate:.0f} msg/s", note=f"capacity {capacity:.0f} msg/s")
        return await self.finish(row, messages, ended)


async def reset_postgres(url: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            await conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace) -> int:
    wanted = [s for s in args.scenarios.split(",") if s]
    if "dbdown" in wanted and not args.database_url:
        wanted.remove("dbdown")  # the outage is made by a proxy in front of PostgreSQL
    # Removed at exit rather than by a with-block: also when Ctrl+C lands mid-cleanup.
    workdir = Path(tempfile.mkdtemp(prefix="mashangyi-drill-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    drill = Drill(args, workdir)
    try:
        await drill.setup()
        for name in wanted:
            print(f"-- {name}", file=sys.stderr, flush=True)
            row = await getattr(drill, name)()
            drill.rows.append(row)
            print(table([row], name), file=sys.stderr, flush=True)
    finally:
        await drill.close()
        log = workdir / "service.log"
        if args.keep_log and log.exists():
            shutil.copy(log, args.keep_log)
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(table(drill.rows, f"{date.today()} {database}"))
    return 1 if any(r.lost for r in drill.rows) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL (emptied first); default SQLite")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--seconds", type=float, default=20.0, help="load per scenario")
    parser.add_argument("--rate", type=float, default=8.0, help="messages/s offered")
    parser.add_argument(
        "--gap", type=float, default=2.0, help="seconds between a resident's messages"
    )
    parser.add_argument("--outage", type=float, default=20.0, help="Bot API outage, seconds")
    parser.add_argument("--db-outage", type=float, default=20.0, help="database outage, seconds")
    parser.add_argument("--ramp-from", type=float, default=10.0, help="msg/s")
    parser.add_argument("--ramp-to", type=float, default=160.0, help="msg/s")
    parser.add_argument("--ramp-seconds", type=float, default=24.0)
    parser.add_argument(
        "--drain-max", type=float, default=100.0, help="seconds to wait for the outbox"
    )
    parser.add_argument(
        "--long", action="store_true", help="60 s outage and overload, as in the issue"
    )
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--transcript", action="store_true", help="show two conversations")
    parser.add_argument("--keep-log", metavar="FILE", help="copy the service's log here")
    args = parser.parse_args()
    if args.long:
        args.outage, args.seconds = 60.0, 60.0
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: the finally blocks clean up
        return asyncio.run(run(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
