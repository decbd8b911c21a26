"""The terminal chat (``mashangyi chat``): its follow-ups, and leaving it (issue 11)."""

from __future__ import annotations

import io
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import load_config
from bot.console import chat
from bot.services import Services, build_services
from storage.db import make_session_factory
from tests.test_review import cards
from tests.world import World, build_world
from workflow.clock import FixedClock

ROOT = Path(__file__).resolve().parent.parent
CONVENER = "V1:convener"


@pytest.fixture
async def world(engine, clock: FixedClock) -> World:
    return await build_world(make_session_factory(engine), clock)


@pytest.fixture
def config_path(database_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[dialogs]\nflood_messages = 1000\n', "utf-8"
    )
    return path


@pytest.fixture
async def services(world: World, clock: FixedClock, config_path: Path) -> AsyncIterator[Services]:
    services = build_services(load_config(config_path, env={}), clock=clock)
    yield services
    await services.close()


async def test_serving_leaves_console_rows_to_the_chat_which_prints_their_buttons(
    world: World, services: Services
) -> None:
    await world.open("V1")
    assert await services.dispatcher().run_once() == 0  # serve/worker: not theirs
    assert [row.status for row in await cards(world, CONVENER)] == ["pending"]

    lines = iter(["受理", ""])  # the card's button, typed
    out = io.StringIO()
    assert await chat(services, "V1", CONVENER, read_line=lambda: next(lines), out=out) == 0
    text = out.getvalue()
    assert "\n[通知] " in text and "【待初审】" in text
    assert "  1. 受理\n  2. 不予受理\n  3. 非议事范围\n  4. 转办\n  5. 提交上级裁定" in text
    assert "请选择「议题类别」：" in text  # the notice's 受理 was pressed
    assert [row.status for row in await cards(world, CONVENER)] == ["sent"]


async def test_a_reply_with_buttons_after_a_notice_is_what_a_number_picks(
    world: World, services: Services
) -> None:
    await world.open("V1")
    lines = iter(["菜单", "1", ""])
    out = io.StringIO()
    await chat(services, "V1", CONVENER, read_line=lambda: next(lines), out=out)
    assert "请选择「议题类别」：" not in out.getvalue()
    assert "请用一句话写下议题标题" in out.getvalue()  # the menu's 1: 提议题


def _read_until(fd: int, wanted: bytes, seen: bytearray, limit: float = 60.0) -> None:
    """Read the terminal's output until ``wanted`` appears (or the process closes it)."""
    deadline = time.monotonic() + limit
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the other end is closed
                return
            if not chunk:
                return
            seen += chunk


def _chat_in_a_terminal(config: Path) -> tuple[subprocess.Popen[bytes], int, bytearray]:
    master, slave = os.openpty()
    command = [sys.executable, "-m", "bot.cli", "--config", str(config), "chat", "--room", "V1"]
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT)
    os.close(slave)
    seen = bytearray()
    _read_until(master, b"\n> ", seen)
    assert b"\n> " in seen, seen.decode(errors="replace")
    return proc, master, seen


def _leave(config: Path, how: str) -> tuple[int | None, str]:
    proc, master, seen = _chat_in_a_terminal(config)
    try:
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        else:
            os.write(master, b"\x04")  # Ctrl-D at the start of a line: end of input
        try:
            code: int | None = proc.wait(timeout=30)  # without a fix: until Enter
        except subprocess.TimeoutExpired:
            code = None
        _read_until(master, b"\0never", seen, limit=1)
        return code, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-d"])
async def test_ctrl_c_and_ctrl_d_leave_the_chat_at_once(
    world: World, config_path: Path, how: str
) -> None:
    code, output = _leave(config_path, how)  # blocks: the test has nothing else to do
    assert code in (0, 130), output
    assert "Traceback" not in output, output
