"""``mashangyi overdue``, run in-process against the test database at a fixed moment."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pytest

from bot.cli import main
from storage.db import make_engine, make_session_factory
from tests.world import build_world
from workflow.clock import CHINA, FixedClock
from workflow.workdays import WorkdayCalendar


def at(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=CHINA)


@pytest.fixture
def config(empty_db: str, tmp_path: Path) -> Path:
    async def topics() -> None:
        engine = make_engine(empty_db)
        try:
            clock = FixedClock(at(2, 9))
            world = await build_world(make_session_factory(engine), clock, WorkdayCalendar.load())
            await world.open("V1", title="运河步道增设公厕")  # first review at V1
            await world.walk(await world.open("V4", title="村道硬化"), ["screen_accept"])
            await world.walk(await world.open("V1", title="跨村道路"), ["refer_to_parent"])
            await world.open("D1", title="区级议题")  # nobody is convener of D1's room
            clock.set(at(2, 25))
            await world.open("V3", title="河道清淤")  # due at the end of 03-04: not overdue
        finally:
            await engine.dispose()

    asyncio.run(topics())
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{empty_db}"\n', encoding="utf-8")
    return path


def run(config: Path, *args: str) -> int:
    # "Now" is Friday 2026-02-27 10:00.
    return main(["--config", str(config), *args], clock=FixedClock(at(2, 27)))


def test_overdue_lists_every_late_step_with_who_must_act(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "overdue", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [
        (
            r["number"],
            r["room"],
            r["state_label"],
            r["waited_workdays"],
            r["overdue_workdays"],
            r["due"],
            r["expected_by"],
            r["escalated"],
            [(p["name"], p["role_label"]) for p in r["responsible"]],
            r["supervising_room"],
        )
        for r in rows
    ] == [
        ("D1-2026-000001", "V1", "待初审", 9, 4, "2026-02-14", "2026-02-26", True,
         [("V1-convener", "召集人")], "D1"),
        ("D2-2026-000001", "V4", "待党组织审定", 9, 4, "2026-02-14", "2026-02-26", True,
         [("V4-party", "党组织书记")], "D2"),
        ("D1-2026-000002", "T1", "待上级裁定受理议事室", 9, 4, "2026-02-14", "2026-02-26", True,
         [("T1-convener", "召集人"), ("T1-supervisor", "县区政协督导")], "D1"),
        ("D1-2026-000003", "D1", "待初审", 9, 4, "2026-02-14", "2026-02-26", True, [], "D1"),
    ]  # fmt: skip
    assert rows[0]["title"] == "运河步道增设公厕"


def test_overdue_under_a_room_and_as_text(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "overdue", "--under", "D2") == 0
    assert capsys.readouterr().out.splitlines() == [
        "D2-2026-000001  V4 四村议事室  待党组织审定  waited 9 working days, due 2026-02-14 "
        "(4 over)  escalated to D2",
        "    responsible: 党组织书记 V4-party",
        "1 overdue",
    ]
    assert run(config, "overdue", "--under", "T1", "--json") == 0
    assert [r["number"] for r in json.loads(capsys.readouterr().out)] == [
        "D1-2026-000001",  # at V1, below T1
        "D1-2026-000002",  # referred to T1 itself
    ]
    assert run(config, "overdue", "--under", "D1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert (len(lines), lines[-3:]) == (
        7,
        [
            "D1-2026-000003  D1 一区议事室  待初审  waited 9 working days, due 2026-02-14 "
            "(4 over)  escalated to D1",
            "    responsible: (nobody holds the role)",
            "3 overdue",
        ],
    )
    assert run(config, "overdue", "--under", "T2") == 0  # V3's topic is not due yet
    assert capsys.readouterr().out == "0 overdue\n"


def test_overdue_under_an_unknown_room(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "overdue", "--under", "NOPE") == 1
    assert "no room with code 'NOPE'" in capsys.readouterr().err


def test_topics_list_and_show_give_the_due_day_overdue_gives(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: one rule — a step is due by the end of its fifth working day — shown as that
    day everywhere (the list showed the exclusive end, "2026-02-15 00:00")."""
    assert run(config, "overdue", "--json") == 0
    overdue = {r["number"]: r["due"] for r in json.loads(capsys.readouterr().out)}
    assert run(config, "topics", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split("due ")[1].split()[0] for line in lines[:-1]}
    assert listed == overdue | {"D1-2026-000004": "2026-03-03"}  # V3's is not overdue yet
    assert run(config, "topics", "show", "D1-2026-000004") == 0
    assert "review due 2026-03-03\n" in capsys.readouterr().out
    assert run(config, "topics", "list", "--json") == 0
    assert {t["number"]: t["due"] for t in json.loads(capsys.readouterr().out)} == listed


def test_topics_list_takes_the_state_as_it_shows_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "topics", "list", "--state", "待初审") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "3 topics" and all("待初审" in line for line in out[:-1])
    assert run(config, "topics", "list", "--state", "submitted") == 0  # the key, as in --json
    assert capsys.readouterr().out.splitlines() == out
    assert run(config, "topics", "list", "--state", "已办结") == 0
    assert capsys.readouterr().out == "0 topics\n"
    assert run(config, "topics", "list", "--state", "done") == 1
    err = capsys.readouterr().err
    assert "unknown state 'done'; valid states: 待初审, 待上级裁定受理议事室, " in err
    assert "已办结, 不予受理, 已转其他渠道办理, 已撤回" in err
