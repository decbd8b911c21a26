"""``mashangyi research plan|show``: the research plan from the command line, refused for
whoever may not plan it, and what the research has so far."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.cli import main
from storage.db import make_engine, make_session_factory
from tests.world import World, build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State


def test_a_research_plan_from_the_command_line(
    empty_db: str, tmp_path: Path, clock: FixedClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async def setup() -> tuple[World, str]:
        engine = make_engine(empty_db)
        world = await build_world(make_session_factory(engine), clock)
        topic = await world.at(State.PUBLICIZED)
        await engine.dispose()
        return world, topic.number

    world, number = asyncio.run(setup())
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{empty_db}"\n', encoding="utf-8")

    def run(*args: str) -> int:
        return main(["--config", str(config), *args], clock=clock)

    plan = ["research", "plan", number, "--plan", "走访沿线住户", "--when", "3月5日上午"]
    assert run(*plan, "--by", str(world.person("-", "resident"))) == 1
    assert "您没有权限对该议题进行「安排商前调研」操作" in capsys.readouterr().err
    assert run(*plan, "--by", str(world.person("V1", "operator"))) == 0
    assert capsys.readouterr().out.strip() == f"{number}: 商前调研中"
    assert run("research", "show", number, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["plan"] == {"plan": "走访沿线住户", "research_when": "3月5日上午"}
    assert (shown["state"], shown["participants"], shown["files"]) == ("researching", [], 0)
    assert run("research", "show", "D9-2026-999999") == 1
