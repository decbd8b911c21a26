"""Working-day calendar: official holidays, 调休, tables for years the package lacks, fallback."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import chinese_calendar
import pytest

from workflow import workdays
from workflow.clock import CHINA
from workflow.workdays import CalendarDataError, WorkdayCalendar, YearTable, load_year_table

LOGGER = "mashangyi.workdays"

# A plausible (made-up, test-only) 2027 table: New Year Fri-Sun, a Spring Festival week and
# one make-up Saturday.
TABLE_2027 = """\
year = 2027
source = "test fixture, not the State Council notice"
holidays = [
  2027-01-01, 2027-01-02, 2027-01-03,
  2027-02-05, 2027-02-06, 2027-02-07, 2027-02-08, 2027-02-09, 2027-02-10, 2027-02-11,
  2027-02-12,
]
workdays = [2027-02-20]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def no_shipped_tables(tmp_path: Path) -> Path:
    """An empty shipped-tables folder, so tests do not depend on what ships later."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    return shipped


@pytest.fixture
def cal_2027(tmp_path: Path, no_shipped_tables: Path) -> WorkdayCalendar:
    return WorkdayCalendar.load(
        [write(tmp_path / "2027.toml", TABLE_2027)], shipped_dir=no_shipped_tables
    )


def d(text: str) -> date:
    return date.fromisoformat(text)


# -- the package's data, checked so the expectations below rest on facts -----------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        # 2025 Spring Festival: 01-28..02-04 off, Sun 01-26 and Sat 02-08 working.
        ("2025-01-26", True),
        ("2025-01-28", False),
        ("2025-02-04", False),
        ("2025-02-08", True),
        # 2025 National Day + Mid-Autumn: 10-01..10-08 off, Sun 09-28 and Sat 10-11 working.
        ("2025-09-28", True),
        ("2025-10-08", False),
        ("2025-10-11", True),
        # 2026 Spring Festival: 02-15..02-23 off, Sat 02-14 and Sat 02-28 working.
        ("2026-02-14", True),
        ("2026-02-15", False),
        ("2026-02-23", False),
        ("2026-02-28", True),
        # 2026 Mid-Autumn 09-25..09-27 (separate from National Day this year).
        ("2026-09-25", False),
        # 2026 National Day: 10-01..10-07 off, Sun 09-20 and Sat 10-10 working.
        ("2026-09-20", True),
        ("2026-10-07", False),
        ("2026-10-10", True),
        # Ordinary weekend.
        ("2026-10-11", False),
    ],
)
def test_package_days(day: str, working: bool) -> None:
    cal = WorkdayCalendar()
    assert cal.is_workday(d(day)) is working
    assert cal.source(d(day)) == "package"


# -- due dates across the big holidays ------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "due"),
    [
        # Fri before Spring Festival 2025: Sun 01-26, Mon 01-27, then 02-05, 02-06, 02-07.
        ("2025-01-24", "2025-02-07"),
        # After it: 02-06, 02-07, Sat 02-08, Mon 02-10, 02-11.
        ("2025-02-05", "2025-02-11"),
        # Started on a holiday: 02-05 .. 02-07, Sat 02-08, Mon 02-10.
        ("2025-01-30", "2025-02-10"),
        # Fri before National Day 2025: Sun 09-28, 09-29, 09-30, then 10-09, 10-10.
        ("2025-09-26", "2025-10-10"),
        # After it: 10-10, Sat 10-11, 10-13, 10-14, 10-15.
        ("2025-10-09", "2025-10-15"),
        # Thu before Spring Festival 2026: 02-13, Sat 02-14, then 02-24, 02-25, 02-26.
        ("2026-02-12", "2026-02-26"),
        # After it: 02-25, 02-26, 02-27, Sat 02-28, Mon 03-02.
        ("2026-02-24", "2026-03-02"),
        # Fri 09-18 2026: Sun 09-20, 09-21 .. 09-24.
        ("2026-09-18", "2026-09-24"),
        # Thu 09-24 2026: Mid-Autumn 09-25..27 and National Day 10-01..07 both skipped.
        ("2026-09-24", "2026-10-09"),
        # After National Day 2026: 10-09, Sat 10-10, 10-12, 10-13, 10-14.
        ("2026-10-08", "2026-10-14"),
    ],
)
def test_add_five_workdays_across_holidays(start: str, due: str) -> None:
    assert WorkdayCalendar().add_workdays(d(start), 5) == d(due)


def test_add_one_workday_lands_on_makeup_saturday() -> None:
    assert WorkdayCalendar().add_workdays(d("2026-02-13"), 1) == d("2026-02-14")
    assert WorkdayCalendar().add_workdays(d("2026-02-27"), 1) == d("2026-02-28")


def test_add_workdays_rejects_n_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WorkdayCalendar().add_workdays(d("2025-01-24"), 0)


def test_workdays_between() -> None:
    cal = WorkdayCalendar()
    # (2025-01-24, 2025-02-07]: 01-26, 01-27, 02-05, 02-06, 02-07.
    assert cal.workdays_between(d("2025-01-24"), d("2025-02-07")) == 5
    # The Spring Festival week itself: nothing.
    assert cal.workdays_between(d("2025-01-27"), d("2025-02-04")) == 0
    # (2026-02-13, 2026-03-01]: Sat 02-14, 02-24..02-27, Sat 02-28.
    assert cal.workdays_between(d("2026-02-13"), d("2026-03-01")) == 6
    assert cal.workdays_between(d("2025-02-07"), d("2025-02-07")) == 0
    assert cal.workdays_between(d("2025-02-07"), d("2025-01-24")) == 0


def test_workdays_between_inverts_add_workdays() -> None:
    cal = WorkdayCalendar()
    start = d("2025-09-20")
    for n in (1, 5, 17, 40):
        assert cal.workdays_between(start, cal.add_workdays(start, n)) == n


# -- due_at ---------------------------------------------------------------------------------


def test_due_at_is_midnight_china_after_fifth_workday() -> None:
    cal = WorkdayCalendar()
    due = cal.due_at(datetime(2025, 1, 24, 15, 30, tzinfo=CHINA))
    assert due == datetime(2025, 2, 8, 0, 0, tzinfo=CHINA)
    assert due == datetime(2025, 2, 7, 16, 0, tzinfo=UTC)
    assert due.tzinfo is CHINA
    assert due.utcoffset() == timedelta(hours=8)


def test_due_at_counts_from_china_local_date() -> None:
    cal = WorkdayCalendar()
    # 2025-01-23 17:00 UTC is already Fri 2025-01-24 01:00 in China.
    assert cal.due_at(datetime(2025, 1, 23, 17, 0, tzinfo=UTC)) == datetime(
        2025, 2, 8, tzinfo=CHINA
    )
    # 15:59 UTC is still Thu 01-23 in China: 01-24, Sun 01-26, 01-27, 02-05, 02-06.
    assert cal.due_at(datetime(2025, 1, 23, 15, 59, tzinfo=UTC)) == datetime(
        2025, 2, 7, tzinfo=CHINA
    )


def test_due_at_other_n() -> None:
    cal = WorkdayCalendar()
    # After National Day 2026, n=2: 10-09, Sat 10-10 -> due at 10-11 00:00.
    assert cal.due_at(datetime(2026, 10, 8, 9, 0, tzinfo=CHINA), 2) == datetime(
        2026, 10, 11, tzinfo=CHINA
    )


def test_due_at_needs_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        WorkdayCalendar().due_at(datetime(2025, 1, 24, 15, 30))


def test_is_workday_refuses_datetime() -> None:
    with pytest.raises(TypeError, match="expected a date"):
        WorkdayCalendar().is_workday(datetime(2025, 1, 24, 15, 30, tzinfo=CHINA))


# -- year end: a table for the year the package lacks --------------------------------------


def test_package_lacks_2027() -> None:
    """The reason the tables exist; if this fails, the package grew: review the tables."""
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2027, 1, 4))


def test_year_end_uses_2027_table(
    cal_2027: WorkdayCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    # Mon 2026-12-28: 12-29, 12-30, 12-31, (Fri 2027-01-01 holiday), 01-04, 01-05.
    assert cal_2027.add_workdays(d("2026-12-28"), 5) == d("2027-01-05")
    assert cal_2027.due_at(datetime(2026, 12, 28, 10, 0, tzinfo=CHINA)) == datetime(
        2027, 1, 6, tzinfo=CHINA
    )
    assert cal_2027.source(d("2026-12-31")) == "package"
    assert cal_2027.source(d("2027-01-01")) == "table"
    assert cal_2027.is_workday(d("2027-01-01")) is False
    assert cal_2027.source(d("2027-01-04")) == "table"
    assert caplog.records == []


def test_2027_table_makeup_saturday(cal_2027: WorkdayCalendar) -> None:
    # Thu 02-04 before the holiday week: 02-15 .. 02-19.
    assert cal_2027.add_workdays(d("2027-02-04"), 5) == d("2027-02-19")
    # 02-18, 02-19, Sat 02-20, 02-22, 02-23.
    assert cal_2027.add_workdays(d("2027-02-17"), 5) == d("2027-02-23")
    assert cal_2027.is_workday(d("2027-02-20")) is True
    assert cal_2027.is_workday(d("2027-02-27")) is False


def test_without_statutory_2027_falls_back() -> None:
    cal = WorkdayCalendar(use_statutory=False)
    # Monday-Friday only: 12-29, 12-30, 12-31, Fri 01-01, Mon 01-04.
    assert cal.add_workdays(d("2026-12-28"), 5) == d("2027-01-04")
    assert cal.source(d("2027-01-01")) == "fallback"


def test_table_overrides_package_for_covered_year() -> None:
    fixed = YearTable(
        year=2026,
        holidays=frozenset({d("2026-12-31")}),
        workdays=frozenset({d("2026-12-26")}),
        source="corrected",
    )
    cal = WorkdayCalendar({2026: fixed})
    assert cal.is_workday(d("2026-12-31")) is False
    assert cal.is_workday(d("2026-12-26")) is True
    assert cal.source(d("2026-12-31")) == "table"
    # The table replaces the whole year: the package's 10-01 holiday is gone.
    assert cal.is_workday(d("2026-10-01")) is True
    assert cal.source(d("2025-10-01")) == "package"


def test_config_table_replaces_shipped_year(tmp_path: Path, no_shipped_tables: Path) -> None:
    write(no_shipped_tables / "2027.toml", TABLE_2027)
    write(no_shipped_tables / "2028.toml", 'year = 2028\nsource = "s"\nholidays = [2028-01-03]\n')
    config = write(
        tmp_path / "corrected-2027.toml",
        'year = 2027\nsource = "corrected"\nholidays = [2027-01-04]\n',
    )
    shipped_only = WorkdayCalendar.load(shipped_dir=no_shipped_tables)
    assert shipped_only.is_workday(d("2027-01-01")) is False
    assert shipped_only.is_workday(d("2027-01-04")) is True

    cal = WorkdayCalendar.load([config], shipped_dir=no_shipped_tables)
    assert cal.is_workday(d("2027-01-01")) is True
    assert cal.is_workday(d("2027-01-04")) is False
    assert cal.source(d("2027-01-04")) == "table"
    # Other shipped years are still loaded.
    assert cal.is_workday(d("2028-01-03")) is False
    assert cal.source(d("2028-01-03")) == "table"


def test_two_config_tables_for_one_year_refused(tmp_path: Path, no_shipped_tables: Path) -> None:
    a = write(tmp_path / "a.toml", TABLE_2027)
    b = write(tmp_path / "b.toml", TABLE_2027)
    with pytest.raises(CalendarDataError, match=r"b\.toml.*already has a table for 2027"):
        WorkdayCalendar.load([a, b], shipped_dir=no_shipped_tables)


def test_shipped_folder_loads_and_is_documented() -> None:
    # Whatever real tables ship must load; the README explains the format.
    WorkdayCalendar.load()
    readme = (workdays.SHIPPED_DIR / "README.md").read_text(encoding="utf-8")
    assert "国务院办公厅关于" in readme
    for path in workdays.SHIPPED_DIR.glob("*.toml"):
        assert load_year_table(path).year == int(path.stem)


# -- a year without any data ----------------------------------------------------------------


def test_year_without_data_is_monday_to_friday_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cal = WorkdayCalendar(use_statutory=False)
    # Wed 2031-01-01 counts as a working day: there is nothing to say it is a holiday.
    assert cal.is_workday(d("2031-01-01")) is True
    assert cal.is_workday(d("2031-01-04")) is False
    assert cal.is_workday(d("2031-01-05")) is False
    assert cal.add_workdays(d("2031-01-01"), 5) == d("2031-01-08")
    assert cal.add_workdays(d("2031-03-06"), 5) == d("2031-03-13")
    assert cal.workdays_between(d("2031-01-01"), d("2031-01-31")) == 22
    assert cal.source(d("2031-06-01")) == "fallback"
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert "2031" in records[0].getMessage()

    # Another year without data gets its own single warning.
    cal.add_workdays(d("2032-01-01"), 10)
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [("2032" in r.getMessage()) for r in records] == [False, True]


def test_coverage_for_year_without_data() -> None:
    cal = WorkdayCalendar(use_statutory=False)
    missing = cal.uncovered_days(d("2031-01-01"))
    assert len(missing) == 90
    assert missing[0] == d("2031-01-01")
    assert missing[-1] == d("2031-03-31")
    warning = cal.coverage_warning(d("2031-01-01"))
    assert warning is not None
    assert "2031" in warning
    assert "2031-01-01 to 2031-03-31" in warning
    assert "\n" not in warning


def test_coverage_near_package_end(no_shipped_tables: Path, tmp_path: Path) -> None:
    cal = WorkdayCalendar.load(shipped_dir=no_shipped_tables)
    # [2026-11-01, 2027-01-30): 2026 is covered by the package, January 2027 is not.
    missing = cal.uncovered_days(d("2026-11-01"))
    assert missing == [d("2027-01-01") + timedelta(days=i) for i in range(29)]
    warning = cal.coverage_warning(d("2026-11-01"))
    assert warning is not None
    assert "2027" in warning
    assert "2026" not in warning.split(":")[0]
    assert "2027-01-01 to 2027-01-29" in warning
    # Sixty days ahead still fits in 2026.
    assert cal.uncovered_days(d("2026-11-01"), 61) == []
    assert cal.coverage_warning(d("2026-11-01"), 61) is None
    # With a 2027 table the horizon is covered.
    covered = WorkdayCalendar.load(
        [write(tmp_path / "2027.toml", TABLE_2027)], shipped_dir=no_shipped_tables
    )
    assert covered.uncovered_days(d("2026-11-01")) == []
    assert covered.coverage_warning(d("2026-11-01")) is None


def test_coverage_check_does_not_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    WorkdayCalendar().coverage_warning(d("2031-01-01"))
    assert caplog.records == []


def test_package_coverage_found_by_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Coverage is learned from NotImplementedError, not from a hard-coded year."""
    real = chinese_calendar.is_workday
    calls: list[date] = []

    def pretend_2026_missing(day: date) -> bool:
        calls.append(day)
        if day.year == 2026:
            raise NotImplementedError("no data")
        return real(day)

    monkeypatch.setattr(chinese_calendar, "is_workday", pretend_2026_missing)
    cal = WorkdayCalendar(use_statutory=False)
    assert cal.source(d("2026-02-16")) == "fallback"
    assert cal.is_workday(d("2026-02-16")) is True  # Monday; the package would say holiday
    assert cal.source(d("2025-02-03")) == "package"
    # A year found missing is not asked again; answered days are cached.
    cal.is_workday(d("2026-02-17"))
    cal.is_workday(d("2025-02-03"))
    assert calls == [d("2026-02-16"), d("2025-02-03")]


def test_use_package_false() -> None:
    cal = WorkdayCalendar(use_package=False, use_statutory=False)
    assert cal.source(d("2025-10-01")) == "fallback"
    assert cal.is_workday(d("2025-10-01")) is True
    # Without the package, 2025 still has its statutory days (provisional).
    statutory = WorkdayCalendar(use_package=False)
    assert (statutory.source(d("2025-10-01")), statutory.is_workday(d("2025-10-01"))) == (
        "statutory",
        False,
    )
    assert statutory.is_workday(d("2025-10-08")) is True  # the notice's extra day is unknown


def test_answers_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    real = chinese_calendar.is_workday
    calls: list[date] = []

    def counting(day: date) -> bool:
        calls.append(day)
        return real(day)

    monkeypatch.setattr(chinese_calendar, "is_workday", counting)
    cal = WorkdayCalendar()
    assert cal.add_workdays(d("2025-01-24"), 5) == d("2025-02-07")
    first = len(calls)
    assert first == 14  # 01-25 .. 02-07
    for _ in range(100):
        assert cal.add_workdays(d("2025-01-24"), 5) == d("2025-02-07")
    assert len(calls) == first


# -- local extra days -----------------------------------------------------------------------


def test_local_days_win_over_package() -> None:
    cal = WorkdayCalendar(
        extra_holidays=[d("2026-02-14"), d("2026-03-02")],  # a 调休 Saturday, a Monday
        extra_workdays=[d("2026-02-16")],  # a Spring Festival day
    )
    assert cal.is_workday(d("2026-02-14")) is False
    assert cal.is_workday(d("2026-03-02")) is False
    assert cal.is_workday(d("2026-02-16")) is True
    assert cal.source(d("2026-02-14")) == "local"
    assert cal.source(d("2026-02-16")) == "local"
    assert cal.source(d("2026-02-17")) == "package"
    # Thu 02-12: 02-13, Mon 02-16 (local), 02-24, 02-25, 02-26.
    assert cal.add_workdays(d("2026-02-12"), 5) == d("2026-02-26")
    # Tue 02-24: 02-25, 02-26, 02-27, Sat 02-28, (Mon 03-02 local holiday), 03-03.
    assert cal.add_workdays(d("2026-02-24"), 5) == d("2026-03-03")


def test_local_days_win_over_table_and_fallback(tmp_path: Path, no_shipped_tables: Path) -> None:
    cal = WorkdayCalendar.load(
        [write(tmp_path / "2027.toml", TABLE_2027)],
        extra_holidays=[d("2027-02-20"), d("2031-01-06")],
        extra_workdays=[d("2027-01-01"), d("2031-01-04")],
        shipped_dir=no_shipped_tables,
    )
    assert cal.is_workday(d("2027-02-20")) is False
    assert cal.is_workday(d("2027-01-01")) is True
    assert cal.source(d("2027-01-01")) == "local"
    assert cal.is_workday(d("2031-01-06")) is False
    assert cal.is_workday(d("2031-01-04")) is True
    assert cal.source(d("2031-01-04")) == "local"
    # Local days are real data: they are not "uncovered".
    missing = cal.uncovered_days(d("2031-01-03"), 4)
    assert missing == [d("2031-01-03"), d("2031-01-05")]


def test_local_day_in_both_lists_refused() -> None:
    with pytest.raises(CalendarDataError, match="2026-05-09"):
        WorkdayCalendar(extra_holidays=[d("2026-05-09")], extra_workdays=[d("2026-05-09")])


# -- bad table files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bad_entry"),
    [
        ('year = 2027\nsource = "s"\nholidays = [2027-01-01, 2026-12-31]\n', "2026-12-31"),
        (
            'year = 2027\nsource = "s"\nholidays = [2027-02-20]\nworkdays = [2027-02-20]\n',
            "2027-02-20",
        ),
        ('year = 2027\nsource = "s"\nholidays = [2027-01-01\n', "not valid TOML"),
        ('year = 2027\nsource = "s"\nholidays = ["2027-01-01"]\n', "'2027-01-01'"),
        ('year = 2027\nsource = "s"\nholidays = [2027-01-01T00:00:00]\n', "2027-01-01"),
        ('year = 2027\nsource = "s"\nholidays = [2027-01-01, 2027-01-01]\n', "listed twice"),
        ('year = 2027\nsource = "s"\nholidays = []\nworkdays = [2027-02-19]\n', "2027-02-19"),
        ('year = 2027\nsource = "s"\nholidays = []\nworkday = [2027-02-20]\n', "workday"),
        ("year = 2027\nholidays = [2027-01-01]\n", "source"),
        ('year = "2027"\nsource = "s"\nholidays = []\n', "year must be an integer"),
        ('year = 2028\nsource = "s"\nholidays = [2028-01-03]\n', "file name says 2027"),
    ],
)
def test_bad_table_file(tmp_path: Path, text: str, bad_entry: str) -> None:
    path = write(tmp_path / "2027.toml", text)
    with pytest.raises(CalendarDataError) as info:
        load_year_table(path)
    message = str(info.value)
    assert "2027.toml" in message
    assert bad_entry in message


def test_bad_shipped_table_fails_load(no_shipped_tables: Path) -> None:
    write(no_shipped_tables / "2027.toml", 'year = 2027\nsource = "s"\nholidays = [2026-01-01]\n')
    with pytest.raises(CalendarDataError, match=r"2027\.toml.*2026-01-01"):
        WorkdayCalendar.load(shipped_dir=no_shipped_tables)


def test_weekend_holiday_is_fine(tmp_path: Path) -> None:
    table = load_year_table(write(tmp_path / "2027.toml", TABLE_2027))
    assert table.year == 2027
    assert d("2027-01-02") in table.holidays  # a Saturday
    assert table.workdays == frozenset({d("2027-02-20")})
    assert table.source == "test fixture, not the State Council notice"


def test_year_table_checks_itself() -> None:
    with pytest.raises(CalendarDataError, match="2026-12-31"):
        YearTable(2027, frozenset({d("2026-12-31")}), frozenset(), "s")
    table = YearTable(2027, frozenset(), frozenset(), "s")
    with pytest.raises(CalendarDataError, match="2027"):
        WorkdayCalendar({2028: table})
