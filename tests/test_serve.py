"""``mashangyi serve --workers N``: several processes on one port, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import sys
import time
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from bot.cli import main
from storage.db import make_session_factory, transaction
from storage.models import DialogState
from tests.test_wechat import payload
from tests.world import ROOMS
from workflow.clock import SystemClock
from workflow.rooms import import_rooms, parse_rooms_csv

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "servetoken"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """The serving processes ``pid`` started (not multiprocessing's resource tracker)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [
        int(child)
        for child in text.split()
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not serving either.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def signed_url(port: int) -> str:
    timestamp, nonce = str(int(time.time())), "serve"
    signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
    return (
        f"http://127.0.0.1:{port}/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}"
    )


@pytest.fixture
async def workers(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[tuple[Process, int]]:
    """``mashangyi serve --workers 2`` on the test database, with the test rooms (the tests
    that use it are ``postgres_only``: SQLite serves with one process)."""
    async with transaction(make_session_factory(engine)) as session:
        await import_rooms(session, parse_rooms_csv(ROOMS.encode()), SystemClock().now())
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n[wechat]\ntoken = "{TOKEN}"\n', "utf-8")
    command = [sys.executable, "-m", "bot.cli", "--config", str(config), "serve"]
    proc = await asyncio.create_subprocess_exec(
        *command, "--workers", "2", "--port", str(port), cwd=ROOT
    )
    deadline = time.monotonic() + 60  # a busy machine starts them slowly
    while len(children(proc.pid)) < 2 or not _answers(port):
        assert proc.returncode is None, "serve --workers exited"
        assert time.monotonic() < deadline, "the workers did not start"
        await asyncio.sleep(0.2)
    yield proc, port
    if proc.returncode is None:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@pytest.mark.postgres_only("several serving processes")
async def test_several_workers_answer_on_one_port(
    workers: tuple[Process, int], engine: AsyncEngine
) -> None:
    proc, port = workers
    assert len(children(proc.pid)) == 2

    async def resident(http: aiohttp.ClientSession, n: int) -> tuple[str, str]:
        # A connection of its own per resident, so the kernel spreads them over the workers.
        scan = payload("scan", FromUserName=f"o{n}", EventKey="r_V1")
        async with http.post(signed_url(port), data=scan.encode()) as response:
            welcome = await response.text()
        body = payload("text", FromUserName=f"o{n}", Content="提议题", MsgId=str(9000 + n)).encode()
        async with http.post(signed_url(port), data=body) as response:
            return welcome, await response.text()

    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        answers = await asyncio.gather(*(resident(http, n) for n in range(20)))
    assert all("欢迎来到一村议事室" in welcome for welcome, _ in answers)
    assert all("标题" in ask for _, ask in answers)
    async with make_session_factory(engine)() as session:
        states = list(await session.exec(select(DialogState)))
    assert sorted(s.external_id for s in states) == sorted(f"o{n}" for n in range(20))
    assert {(s.flow, s.step) for s in states} == {("submit_topic", "title")}
    # Whichever worker answers a scrape counts the requests of both (one metrics directory).
    for _ in range(4):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                scraped = await response.text()
        assert 'mashangyi_request_seconds_count{route="wechat"} 40.0' in scraped


@pytest.mark.postgres_only("several serving processes")
async def test_sigterm_stops_every_worker(workers: tuple[Process, int]) -> None:
    proc, _ = workers
    pids = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert not any(alive(pid) for pid in pids)


@pytest.mark.postgres_only("several serving processes")
async def test_a_dead_worker_stops_the_rest_and_fails(
    workers: tuple[Process, int],
) -> None:
    """A supervisor (systemd, Kubernetes) then restarts the whole service."""
    proc, _ = workers
    first, second = children(proc.pid)
    os.kill(second, signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 30) == 1
    assert not alive(first)


@pytest.mark.postgres_only("several serving processes")
async def test_workers_stop_when_their_parent_is_killed(
    workers: tuple[Process, int],
) -> None:
    """SIGKILL (or the OOM killer) gives the parent no chance to stop them."""
    proc, _ = workers
    pids = children(proc.pid)
    proc.kill()
    await proc.wait()
    deadline = time.monotonic() + 60  # a busy machine starts them slowly
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "workers outlived their parent"
        await asyncio.sleep(0.2)


def test_several_workers_need_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "x.db"}"\n', "utf-8")
    assert main(["--config", str(config), "serve", "--workers", "2"]) == 1
    assert "need PostgreSQL" in capsys.readouterr().err
    assert main(["--config", str(config), "serve", "--workers", "0"]) == 1
    assert "at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["serve"], ["worker"], ["serve", "--workers", "2"]], ids=" ".join
)
async def test_a_wechat_account_without_a_secret_key_refuses_to_start_naming_the_key(
    database_url: str, tmp_path: Path, command: list[str]
) -> None:
    """Review links signed with a random key would all die at the next restart."""
    if "--workers" in command:  # refused before any connection: no server needed there
        database_url = "postgresql+asyncpg://nobody@127.0.0.1:9/none"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n[wechat]\napp_id = "wxnokey"\napp_secret = "s"\n',
        "utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASHANGYI_")}
    if command[0] == "serve":
        command = [*command, "--port", str(free_port())]
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bot.cli", "--config", str(config), *command],
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:  # it started after all (the defect): stop it
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1
    assert err.decode().strip().splitlines()[-1].startswith("mashangyi: server.secret_key: ")
