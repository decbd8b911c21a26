"""The statutory holidays computed from the law, and the calendar that falls back on them
(flagged provisional) for a year no table or package covers."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import chinese_calendar
import pytest

from bot.cli import main
from storage.db import make_engine, make_session_factory
from tests.world import build_world
from workflow.clock import CHINA, FixedClock
from workflow.statutory import FIRST_YEAR, statutory_days, statutory_set
from workflow.workdays import WorkdayCalendar

LOGGER = "mashangyi.workdays"


def d(text: str) -> date:
    return date.fromisoformat(text)


def package_years() -> range:
    """The years from 2025 (the revised law) that the installed chinese_calendar covers."""
    last = max(chinese_calendar.constants.holidays).year
    return range(FIRST_YEAR, last + 1)


def test_the_package_covers_at_least_2025_and_2026() -> None:
    assert package_years()[:2] == range(2025, 2027)


@pytest.mark.parametrize("year", package_years())
def test_every_statutory_day_is_a_holiday_in_the_package(year: int) -> None:
    # Only from 2025: before it the earlier law gave 3 Spring Festival days (from 初一) and
    # 1 Labour Day day, so 除夕 and 2 May were not always off.
    for festival in statutory_days(year):
        for day in festival.days:
            assert chinese_calendar.is_holiday(day), (festival.festival, day)
            assert not chinese_calendar.is_workday(day), (festival.festival, day)


def test_the_days_of_2025_2026_and_2027() -> None:
    def days(year: int) -> dict[str, list[str]]:
        return {f.festival: [x.isoformat() for x in f.days] for f in statutory_days(year)}

    assert days(2025)["spring_festival"] == ["2025-01-28", "2025-01-29", "2025-01-30", "2025-01-31"]
    # The 12th lunar month of 2025 has 29 days: 除夕 is 腊月二十九, 16 February 2026.
    assert days(2026)["spring_festival"] == ["2026-02-16", "2026-02-17", "2026-02-18", "2026-02-19"]
    assert days(2027) == {
        "new_year": ["2027-01-01"],
        "spring_festival": ["2027-02-05", "2027-02-06", "2027-02-07", "2027-02-08"],
        "qingming": ["2027-04-05"],
        "labour_day": ["2027-05-01", "2027-05-02"],
        "dragon_boat": ["2027-06-09"],
        "mid_autumn": ["2027-09-15"],
        "national_day": ["2027-10-01", "2027-10-02", "2027-10-03"],
    }  # fmt: skip


def test_qingming_is_the_solar_term_not_a_fixed_day() -> None:
    # 清明 moves between 4 and 5 April with the sun (China time).
    qingming = {y: next(f.days[0] for f in statutory_days(y) if f.festival == "qingming")
                for y in (2025, 2026, 2027, 2028, 2029, 2032, 2100)}  # fmt: skip
    assert {y: q.day for y, q in qingming.items()} == {
        2025: 4, 2026: 5, 2027: 5, 2028: 4, 2029: 4, 2032: 4, 2100: 5,
    }  # fmt: skip
    assert {q.month for q in qingming.values()} == {4}


def test_mid_autumn_on_national_day_counts_once() -> None:
    # 2028: 八月十五 is 3 October, one of the National Day days.
    assert d("2028-10-03") in next(
        f.days for f in statutory_days(2028) if f.festival == "mid_autumn"
    )
    assert len(statutory_set(2028)) == 12


def test_years_before_the_revised_law_are_refused() -> None:
    with pytest.raises(ValueError, match="earlier one"):
        statutory_days(2024)


# -- the calendar: statutory days for a year nothing else covers ---------------------------


def test_2027_is_statutory_and_provisional(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cal = WorkdayCalendar()
    assert cal.source(d("2026-12-31")) == "package"
    assert cal.source(d("2027-01-01")) == "statutory"
    # Mon 2026-12-28: 12-29, 12-30, 12-31, (Fri 2027-01-01 off), Mon 01-04, Tue 01-05.
    assert cal.add_workdays(d("2026-12-28"), 5) == d("2027-01-05")
    due = cal.due(datetime(2026, 12, 28, 10, 0, tzinfo=CHINA))
    assert due.at == datetime(2027, 1, 6, tzinfo=CHINA)
    assert due.sources == {"package", "statutory"}
    assert due.provisional is True
    # Within 2026 (the package's data) nothing is provisional.
    assert cal.due(datetime(2026, 12, 1, 10, 0, tzinfo=CHINA)).provisional is False
    # Spring Festival 2027, 02-05 (Fri, 除夕) .. 02-08 (Mon): 02-02, 02-03, 02-04, 02-09, 02-10.
    assert cal.add_workdays(d("2027-02-01"), 5) == d("2027-02-10")
    # No 调休 is guessed: the Saturday after is a rest day.
    assert cal.is_workday(d("2027-02-13")) is False
    # A long clock from late December: 20 working days in January 2027 (not 01-01), then
    # 02-01..02-04, 02-09..02-11; Monday-Friday would have ended on Monday 02-08.
    assert cal.add_workdays(d("2026-12-28"), 30) == d("2027-02-11")
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1
    assert "2027" in warnings[0]
    assert "PROVISIONAL" in warnings[0]
    assert "调休" in warnings[0]
    monday_to_friday = WorkdayCalendar(use_statutory=False)
    assert monday_to_friday.add_workdays(d("2026-12-28"), 30) == d("2027-02-08")


def test_the_coverage_warning_stays_and_says_provisional() -> None:
    warning = WorkdayCalendar().coverage_warning(d("2026-11-01"))
    assert warning is not None
    assert warning.startswith("No official holiday data for 2027: 29 day(s) from 2027-01-01")
    assert "29 are PROVISIONAL: statutory holidays computed from the law" in warning
    assert "Monday-Friday" not in warning
    assert WorkdayCalendar().coverage(d("2026-12-01"), 62) == {
        2026: {"package"},
        2027: {"statutory"},
    }


def test_a_table_for_2027_replaces_the_statutory_days(tmp_path: Path) -> None:
    (tmp_path / "2027.toml").write_text(
        'year = 2027\nsource = "test"\nholidays = [2027-01-01, 2027-01-04]\n', "utf-8"
    )
    cal = WorkdayCalendar.load([tmp_path / "2027.toml"], shipped_dir=tmp_path / "none")
    assert cal.source(d("2027-02-08")) == "table"
    assert cal.is_workday(d("2027-02-08")) is True
    assert cal.due(datetime(2026, 12, 28, 10, 0, tzinfo=CHINA)).provisional is False


# -- through the service: a review clock started at the end of 2026 ------------------------


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 10, tzinfo=CHINA)


@pytest.fixture
def config(empty_db: str, tmp_path: Path) -> Path:
    async def topics() -> None:
        engine = make_engine(empty_db)
        try:
            clock = FixedClock(at(2026, 12, 28))
            world = await build_world(make_session_factory(engine), clock, WorkdayCalendar.load())
            await world.open("V1", title="年底提交的议题")
            clock.set(at(2027, 2, 1))
            await world.open("V1", title="春节前提交的议题")
        finally:
            await engine.dispose()

    asyncio.run(topics())
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{empty_db}"\n', encoding="utf-8")
    return path


def test_review_clock_into_2027_skips_the_statutory_days(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = main(
        ["--config", str(config), "topics", "list", "--json"], clock=FixedClock(at(2027, 2, 1))
    )
    assert run == 0
    due = {row["title"]: row["due"] for row in json.loads(capsys.readouterr().out)}
    # 1 January and the Spring Festival days (02-05..02-08) are not counted.
    assert due == {"年底提交的议题": "2027-01-05", "春节前提交的议题": "2027-02-10"}


def test_calendar_status_shows_2027_as_provisional(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FixedClock(at(2026, 12, 20))
    assert main(["--config", str(config), "calendar", "status"], clock=clock) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2026: chinese-calendar package"
    assert out[1].startswith("2027: PROVISIONAL: statutory holidays computed from the law")
    assert out[2].startswith("No official holiday data for 2027: 78 day(s) from 2027-01-01")
    assert (d("2026-12-20") + timedelta(days=89)).isoformat() in out[2]
