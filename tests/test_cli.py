"""The ``mashangyi`` command line, run in-process against the test database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from bot.cli import main
from storage.migrate import head_revision

GOOD = """code,name,level,parent_code
HA,示范市,city,
QJP,清江浦区,district,HA
QJP-CX,长西街道,street,QJP
QJP-CX-A,柳树湾社区,community,QJP-CX
"""


@pytest.fixture
def config(empty_db: str, tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{empty_db}"\n', encoding="utf-8")
    return path


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def write(tmp_path: Path, text: str, name: str = "rooms.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def room_codes(config: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    assert run(config, "rooms", "list") == 0
    lines = capsys.readouterr().out.splitlines()[:-1]
    return [line.split()[0] for line in lines]


def test_import_creates_then_updates_and_never_duplicates(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "rooms", "import", str(write(tmp_path, GOOD, bom=True))) == 0
    assert "4 created, 0 updated, 0 unchanged" in capsys.readouterr().out
    changed = GOOD.replace("柳树湾社区", "柳树湾社区（新）") + "QJP-CX-B,运河村,village,QJP-CX\n"
    assert run(config, "rooms", "import", str(write(tmp_path, changed))) == 0
    assert "1 created, 1 updated, 3 unchanged" in capsys.readouterr().out
    assert room_codes(config, capsys) == ["HA", "QJP", "QJP-CX", "QJP-CX-A", "QJP-CX-B"]
    assert run(config, "rooms", "list") == 0
    out = capsys.readouterr().out
    assert "      QJP-CX-A  柳树湾社区（新）  [community]" in out
    assert out.rstrip().endswith("5 rooms")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("code,name\nA,甲\n", "line 1: header must be exactly: code,name,level,parent_code"),
        (GOOD + "BAD,坏行,village\n", "line 6: expected 4 fields, found 3"),
        (GOOD + "X1,某村,village,NOWHERE\n", "line 6: unknown parent room 'NOWHERE'"),
        (GOOD + "QJP,重复,district,HA\n", "line 6: duplicate code 'QJP' (first on line 3)"),
        (GOOD + "X1,某村,hamlet,QJP\n", "line 6: unknown level 'hamlet'"),
        (GOOD + ",无编号,village,QJP\n", "line 6: code and name must not be empty"),
        (GOOD + "L1,甲,village,L2\nL2,乙,village,L1\n", "line 6: room tree would have a cycle"),
        (GOOD + "S1,自己,village,S1\n", "line 6: room 'S1' cannot be its own parent"),
        (GOOD + "荷北,荷北社区,community,QJP\n", "line 6: room code '荷北' may only use A-Z"),
        (GOOD + 'Q1,"未闭合,village,QJP\n', "expected 4 fields"),
    ],
)
def test_a_bad_file_names_the_line_and_writes_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    assert run(config, "rooms", "import", str(write(tmp_path, text))) == 1
    err = capsys.readouterr().err
    assert message in err
    assert room_codes(config, capsys) == []


def test_not_utf8_is_refused(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes(GOOD.encode("gbk"))
    assert run(config, "rooms", "import", str(path)) == 1
    assert "not UTF-8 text" in capsys.readouterr().err


def test_a_cycle_with_rooms_already_stored_is_refused_and_nothing_changes(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "rooms", "import", str(write(tmp_path, GOOD))) == 0
    capsys.readouterr()
    cycle = "code,name,level,parent_code\nNEW,新社区,community,QJP\nHA,示范市,city,QJP-CX-A\n"
    assert run(config, "rooms", "import", str(write(tmp_path, cycle))) == 1
    assert "line 3: room tree would have a cycle: HA → QJP-CX-A → QJP-CX → QJP → HA" in (
        capsys.readouterr().err
    )
    assert room_codes(config, capsys) == ["HA", "QJP", "QJP-CX", "QJP-CX-A"]


def test_a_missing_file_is_one_clear_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "rooms", "import", "/nonexistent/rooms.csv") == 1
    assert capsys.readouterr().err.startswith("mashangyi: cannot read /nonexistent/rooms.csv")


def test_demo_topics_list_and_show(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "demo") == 0
    assert "demo topics: 11 created" in capsys.readouterr().out
    assert run(config, "demo") == 0  # twice changes nothing
    assert "already present" in capsys.readouterr().out

    assert run(config, "topics", "list", "--json") == 0
    topics = json.loads(capsys.readouterr().out)
    assert len(topics) == 11
    assert {t["state"] for t in topics} >= {
        "implemented",
        "redirected",
        "publicized",
        "submitted",
        "withdrawn",
        "declined",
        "meeting_scheduled",
        "awaiting_approval",
        "outcome_review",
        "referred",
    }

    assert run(config, "topics", "list", "--room", "DH-JY-HB", "--state", "publicized") == 0
    out = capsys.readouterr().out
    assert "小区为老人增设休息长椅" in out and out.rstrip().endswith("1 topics")

    toilets = next(t for t in topics if t["title"] == "运河步道沿线增设公共厕所")
    assert run(config, "topics", "show", toilets["number"], "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [h["action"] for h in shown["history"]] == [
        "submit",
        "screen_accept",
        "approve",
        "publish",
        "plan_research",
        "record_findings",
        "schedule_meeting",
        "record_meeting",
        "approve_outcome",
        "publish_results",
        "record_progress",
        "complete",
    ]
    assert shown["history"][2]["actor_role"] == "party"
    assert shown["state"] == "implemented"
    # The demo's past was read back then: a reviewer's first chat starts with what they
    # ask for, not weeks of stale cards.
    assert {d["status"] for d in shown["deliveries"]} == {"sent"}

    assert run(config, "topics", "show", toilets["number"]) == 0
    text = capsys.readouterr().out
    assert "state:     已办结 (implemented)" in text
    assert "12. " in text and "办结情况: 两座公厕已投入使用。" in text


def test_topics_list_comes_in_pages_and_reads_only_the_names_shown(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: ``topics list`` is bounded, and only the rooms and people shown are read."""
    assert run(config, "demo") == 0
    capsys.readouterr()
    assert run(config, "topics", "list", "--json") == 0
    every = json.loads(capsys.readouterr().out)
    statements: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    event.listen(Engine, "before_cursor_execute", listen)
    try:
        assert run(config, "topics", "list", "--limit", "4", "--json") == 0
    finally:
        event.remove(Engine, "before_cursor_execute", listen)
    page = json.loads(capsys.readouterr().out)
    assert page == every[:4]  # the same rooms' codes and names as the whole list
    [(rooms, params)] = [(s, p) for s, p in statements if "FROM rooms" in s]
    assert " IN " in rooms and len(params) == len({t["room"] for t in page}) < 15

    assert run(config, "topics", "list", "--limit", "4") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [t["number"] for t in every[:4]]
    assert lines[-1] == "4 of 11 topics; the next with --offset 4"
    assert run(config, "topics", "list", "--limit", "4", "--offset", "8") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [t["number"] for t in every[8:]]
    assert lines[-1] == "3 of 11 topics"
    assert run(config, "topics", "list", "--limit", "0") == 1
    assert "--limit must be at least 1" in capsys.readouterr().err

    toilets = next(t for t in every if t["title"] == "运河步道沿线增设公共厕所")
    assert run(config, "topics", "show", toilets["number"], "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["room_name"], shown["submitter"]) == ("荷北社区协商议事室", "王秀英")
    assert [h["actor"] for h in shown["history"][:3]] == [
        "王秀英",
        "荷北社区召集人",
        "荷北社区党组织书记",
    ]
    assert {d["to"] for d in shown["deliveries"]} >= {"王秀英"}


def test_unknown_topic_and_room(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "topics", "show", "NO-2026-000001") == 1
    assert "no topic numbered 'NO-2026-000001'" in capsys.readouterr().err
    assert run(config, "topics", "list", "--room", "NOPE") == 1
    assert "no room with code 'NOPE'" in capsys.readouterr().err


def test_db_upgrade_reports_the_revision(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "db", "upgrade") == 0
    assert f"database is at revision {head_revision()}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nport = 70000\n", "server.port: must be between 1 and 65535"),
        ("[server]\nprot = 80\n", "unknown config key server.prot"),
        ("[nope]\n", "unknown config section [nope]"),
        ('[database]\nurl = "mysql://x"\n', "database.url: must start with sqlite+aiosqlite://"),
        ('[wechat]\nencoding_aes_key = "short"\n', "wechat.encoding_aes_key: must be 43"),
        ('[telegram]\nwebhook_secret = "has space"\n', "telegram.webhook_secret: must be 1-256"),
        ("[server\n", "not valid TOML"),
        ('[outbox]\nmax_attempts = "many"\n', "outbox.max_attempts: expected a number"),
    ],
)
def test_a_bad_config_value_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml, encoding="utf-8")
    assert main(["--config", str(path), "rooms", "list"]) == 1
    assert message in capsys.readouterr().err


def test_missing_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", "/nonexistent.toml", "rooms", "list"]) == 1
    assert "config file not found: /nonexistent.toml" in capsys.readouterr().err
