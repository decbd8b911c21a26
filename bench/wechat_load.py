"""Signed WeChat text messages through the full path, against a bare aiohttp handler.

    .venv/bin/python bench/wechat_load.py [--db sqlite,postgres] [--conns 50,200]
                                          [--seconds 10] [--profile]

For each database: a fresh database with the demo rooms, ``mashangyi serve`` in its own
process (WeChat plaintext mode), and a load generator in this process: each connection is
one resident who scans a room's code and then walks through 提议题 (title, description,
next, skip, confirm), over and over — every request is verify → parse → dedupe → dialog
step → commit → passive reply, and every seventh one creates a topic. Measured in the same
run with the same client: the bare handler (bench/bare.py, answers ``success``) and two
floors (bench/floor.py: signature, parse, one committed transaction per message advancing a
step and storing the receipt, the least a handler that loses nothing costs): "raw" through
the driver alone (one round trip on PostgreSQL), "stack" through the project's SQLAlchemy
async engine. Prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
TOKEN = "benchtoken"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/mashangyi_bench"
STEPS = ["提议题", "夜间施工噪音扰民", "工地经常施工到夜里十二点，影响休息", "下一步", "跳过", "1"]


def signed_query() -> str:
    timestamp, nonce = str(int(time.time())), "bench"
    signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
    return f"signature={signature}&timestamp={timestamp}&nonce={nonce}"


def text_xml(openid: str, msg_id: int, content: str) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


def scan_xml(openid: str, room: str) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{time.time_ns()}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[SCAN]]></Event><EventKey><![CDATA[r_{room}]]></EventKey>"
        f"<Ticket><![CDATA[t]]></Ticket></xml>"
    ).encode()


async def load(port: int, conns: int, seconds: float, warmup: float) -> dict[str, float]:
    """``conns`` residents, one connection each, as fast as the server answers."""
    ids = itertools.count(int(time.time() * 1000) * 1000)
    latencies: list[float] = []
    errors = 0
    measuring = False
    deadline = time.monotonic() + warmup + seconds
    url = f"http://127.0.0.1:{port}/wechat?{signed_query()}"
    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def resident(n: int) -> None:
            nonlocal errors
            openid = f"o{os.getpid()}x{n}x{next(ids)}"
            step = -1
            while time.monotonic() < deadline:
                body = (
                    scan_xml(openid, "DH-JY-HB")
                    if step < 0
                    else text_xml(openid, next(ids), STEPS[step])
                )
                step = (step + 1) % len(STEPS)
                start = time.perf_counter()
                async with http.post(url, data=body) as response:
                    await response.read()
                    ok = response.status == 200
                if measuring:
                    latencies.append(time.perf_counter() - start)
                    errors += not ok

        async def clock() -> None:
            nonlocal measuring
            await asyncio.sleep(warmup)
            measuring = True

        began = time.monotonic()
        await asyncio.gather(clock(), *(resident(n) for n in range(conns)))
        elapsed = time.monotonic() - began - warmup
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": errors,
    }


def wait_ready(port: int, path: str, proc: subprocess.Popen) -> None:
    import urllib.error
    import urllib.request

    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except urllib.error.HTTPError:  # it answered (e.g. 405 for a GET): it is up
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def prepare(db: str, workdir: Path) -> Path:
    if db == "postgres":
        subprocess.run(
            ["psql", PG_ADMIN, "-qc", "DROP DATABASE IF EXISTS mashangyi_bench"], check=True
        )
        subprocess.run(["psql", PG_ADMIN, "-qc", "CREATE DATABASE mashangyi_bench"], check=True)
        url = PG_URL
    else:
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    config = workdir / f"{db}.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[wechat]\ntoken = "{TOKEN}"\n'
        f"[dialogs]\nflood_messages = 1000000\n",
        "utf-8",
    )
    for args in (["db", "upgrade"], ["rooms", "import", str(ROOT / "bot/demo/rooms.csv")]):
        subprocess.run(
            [BIN / "mashangyi", "--config", config, *args], check=True, stdout=subprocess.DEVNULL
        )
    return config


def serve(config: Path, port: int, profile: Path | None, workers: int = 1) -> subprocess.Popen:
    command = [str(BIN / "python")]
    if profile:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += ["-m", "bot.cli", "--config", str(config), "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_ready(port, "/healthz", proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--conns", default="50,200")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--workers", type=int, default=1, help="serving processes on PostgreSQL (serve --workers)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the server at the highest connection count"
    )
    args = parser.parse_args()
    conns = [int(c) for c in args.conns.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        baseline = {c: measure([ROOT / "bench/bare.py", "18090"], 18090, c, args) for c in conns}
        for db in args.db.split(","):
            config = prepare(db, workdir)
            stack_floor_url = (
                PG_URL if db == "postgres" else f"sqlite+aiosqlite:///{workdir}/stack-floor.db"
            )
            floor_url = stack_floor_url.replace("+asyncpg", "").replace("+aiosqlite", "")
            for c in conns:
                profile = workdir / f"{db}-{c}.prof" if args.profile and c == max(conns) else None
                workers = args.workers if db == "postgres" else 1
                server = serve(config, 18091, profile, workers)
                try:
                    result = asyncio.run(load(18091, c, args.seconds, args.warmup))
                finally:
                    stop(server)
                floor = measure([ROOT / "bench/floor.py", "18092", floor_url], 18092, c, args)
                stack = measure([ROOT / "bench/floor.py", "18093", stack_floor_url], 18093, c, args)
                label = db if workers == 1 else f"{db}, {workers} processes"
                rows.append((label, c, result, floor, stack, baseline[c]))
                if profile:
                    print_profile(profile, db)
    print()
    print(
        "| database | conns | full path req/s | p50 ms | p99 ms | raw floor req/s | p99 ms "
        "| stack floor req/s | p99 ms | bare req/s | p99 ms "
        "| full / bare | raw floor / bare | stack floor / bare | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for db, c, r, f, st, b in rows:
        print(
            f"| {db} | {c} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{f['rps']:.0f} | {f['p99']:.1f} | {st['rps']:.0f} | {st['p99']:.1f} | "
            f"{b['rps']:.0f} | {b['p99']:.1f} | {r['rps'] / b['rps']:.0%} | "
            f"{f['rps'] / b['rps']:.0%} | {st['rps'] / b['rps']:.0%} | "
            f"{r['errors'] + f['errors'] + st['errors']} |"
        )


def measure(script: list[str | Path], port: int, conns: int, args: argparse.Namespace) -> dict:
    """Start a stand-alone comparison server (bare, floor), load it, stop it."""
    proc = subprocess.Popen([BIN / "python", *script])
    try:
        wait_ready(port, "/wechat", proc)
        return asyncio.run(load(port, conns, args.seconds, args.warmup))
    finally:
        stop(proc)


def print_profile(path: Path, db: str) -> None:
    import pstats

    print(f"\nprofile of the server ({db}), top 25 by own time:")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)
    stats.print_callers("builtins.compile|__build_class__")


if __name__ == "__main__":
    main()
