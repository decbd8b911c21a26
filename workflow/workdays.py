"""China's working-day calendar, used for the five-working-day review rule (000 §18).

Where an answer comes from, strongest first:

1. ``local``    extra local holidays / working days from config (they win over everything);
2. ``table``    a holiday table for that year: shipped in ``workflow/holidays/<year>.toml``
                or in config (``calendar.table_dir``, where ``calendar import`` writes, and
                ``calendar.holiday_tables``; config wins for the same year). A table beats
                the package, so a wrong or late package year can be corrected without
                upgrading it;
3. ``package``  the ``chinese_calendar`` package, for the years it has data for. Its coverage
                is found out by asking it (it raises ``NotImplementedError`` outside its
                range), never hard-coded, so upgrading the package extends it;
4. ``statutory`` the statutory holidays computed from the law (statutory.py, from 2025 on),
                without 调休: *provisional*, because only the State Council's notice says
                which weekends are swapped; one logged warning per year says so;
5. ``fallback`` Monday-Friday, with one logged warning per year, because a due date that is
                a few days off is better than a review that can never fall due.

Build one calendar at start-up and share it: answers are cached per day, and the statutory
and fallback warnings are logged once per year per calendar. (A little over 400 lines: the
table format's checks stay beside the one class that reads the tables.)
"""

from __future__ import annotations

import logging
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import chinese_calendar

from workflow.clock import CHINA
from workflow.statutory import FIRST_YEAR, statutory_set

__all__ = [
    "PROVISIONAL",
    "SHIPPED_DIR",
    "CalendarDataError",
    "DueDate",
    "Source",
    "WorkdayCalendar",
    "YearTable",
    "load_year_table",
]

log = logging.getLogger("mashangyi.workdays")

#: Holiday tables shipped with the code; every ``*.toml`` here is loaded.
SHIPPED_DIR = Path(__file__).resolve().parent / "holidays"

Source = Literal["local", "table", "package", "statutory", "fallback"]

#: Sources that may change once the year's State Council notice is loaded.
PROVISIONAL: frozenset[Source] = frozenset({"statutory", "fallback"})

_ONE_DAY = timedelta(days=1)
_TABLE_KEYS = {"year", "source", "holidays", "workdays"}


class CalendarDataError(ValueError):
    """A holiday table or the local extra days contradict themselves or are malformed."""


@dataclass(frozen=True)
class YearTable:
    """One year of official holidays and 调休 working days.

    ``holidays`` are days off (a weekend day may be listed; it changes nothing), and
    ``workdays`` are weekend days declared working days. Every other day is Monday-Friday.
    """

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str

    def __post_init__(self) -> None:
        _check_table(self.year, self.holidays, self.workdays, f"holiday table for {self.year}")

    def is_workday(self, day: date) -> bool:
        """The answer for ``day``, which must lie in this table's year."""
        if day in self.holidays:
            return False
        if day in self.workdays:
            return True
        return day.weekday() < 5


def _check_table(year: int, holidays: Iterable[date], workdays: Iterable[date], where: str) -> None:
    """Reject tables that cannot be right: a wrong year, a day both off and on, and so on."""
    if isinstance(year, bool) or not isinstance(year, int):
        raise CalendarDataError(f"{where}: year must be an integer, got {year!r}")
    for kind, days in (("holidays", holidays), ("workdays", workdays)):
        for day in days:
            if isinstance(day, datetime) or not isinstance(day, date):
                raise CalendarDataError(
                    f"{where}: {kind} entry {day!r} is not a date (write e.g. {year}-01-01, "
                    "a TOML local date without quotes)"
                )
            if day.year != year:
                raise CalendarDataError(
                    f"{where}: {kind} entry {day.isoformat()} is not in year {year}"
                )
    both = sorted(set(holidays) & set(workdays))
    if both:
        listed = ", ".join(d.isoformat() for d in both)
        raise CalendarDataError(f"{where}: {listed} listed both as holiday and as workday")
    for day in sorted(workdays):
        if day.weekday() < 5:
            # A weekday is a working day anyway; listing it is almost surely a typo.
            raise CalendarDataError(
                f"{where}: workdays entry {day.isoformat()} is a {day:%A}, "
                "only weekend days can be make-up working days (调休)"
            )


def _date_list(data: dict[str, Any], key: str, where: str) -> list[date]:
    raw = data.get(key, [])
    if not isinstance(raw, list):
        raise CalendarDataError(f"{where}: {key} must be a list of dates, got {raw!r}")
    seen: set[date] = set()
    for entry in raw:
        if isinstance(entry, date) and not isinstance(entry, datetime):
            if entry in seen:
                raise CalendarDataError(f"{where}: {key} entry {entry.isoformat()} listed twice")
            seen.add(entry)
    return raw


def load_year_table(path: Path) -> YearTable:
    """Read and validate one ``<year>.toml`` table (format: ``workflow/holidays/README.md``).

    Errors name the file and the bad entry, so whoever typed in the State Council notice
    can find the mistake.
    """
    path = Path(path)
    where = str(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise CalendarDataError(f"{where}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise CalendarDataError(f"{where}: cannot read holiday table: {exc}") from exc

    unknown = sorted(set(data) - _TABLE_KEYS)
    if unknown:
        raise CalendarDataError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in ("year", "source", "holidays"):
        if key not in data:
            raise CalendarDataError(f"{where}: missing key {key!r}")
    year = data["year"]
    source = data["source"]
    if not isinstance(source, str) or not source.strip():
        raise CalendarDataError(f"{where}: source must name the State Council notice")
    holidays = _date_list(data, "holidays", where)
    workdays = _date_list(data, "workdays", where)
    _check_table(year, holidays, workdays, where)
    if path.stem.isdigit() and int(path.stem) != year:
        raise CalendarDataError(f"{where}: file name says {path.stem} but year = {year}")
    return YearTable(
        year=year,
        holidays=frozenset(holidays),
        workdays=frozenset(workdays),
        source=source.strip(),
    )


def _load_tables(paths: Iterable[Path], what: str) -> dict[int, YearTable]:
    """Load tables, refusing two files for the same year (which one would be right?)."""
    tables: dict[int, YearTable] = {}
    origin: dict[int, Path] = {}
    for path in paths:
        table = load_year_table(path)
        if table.year in tables:
            raise CalendarDataError(
                f"{path}: {what} already has a table for {table.year} ({origin[table.year]})"
            )
        tables[table.year] = table
        origin[table.year] = Path(path)
    return tables


@dataclass(frozen=True)
class DueDate:
    """When a step is due, and where the working days counted to get there came from."""

    at: datetime
    sources: frozenset[Source]

    @property
    def provisional(self) -> bool:
        """True if some day counted has no official data (statutory or Monday-Friday): the
        date may move once that year's State Council notice is imported."""
        return bool(self.sources & PROVISIONAL)


class WorkdayCalendar:
    """Answers "is this a working day in China?" and counts working days for due dates."""

    def __init__(
        self,
        tables: Mapping[int, YearTable] | None = None,
        *,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        use_package: bool = True,
        use_statutory: bool = True,
    ) -> None:
        self._tables: dict[int, YearTable] = dict(tables or {})
        for year, table in self._tables.items():
            if year != table.year:
                raise CalendarDataError(f"table for {table.year} given under year {year}")
        self._extra_holidays = frozenset(extra_holidays)
        self._extra_workdays = frozenset(extra_workdays)
        for day in self._extra_holidays | self._extra_workdays:
            if isinstance(day, datetime) or not isinstance(day, date):
                raise CalendarDataError(f"local extra day {day!r} is not a date")
        both = sorted(self._extra_holidays & self._extra_workdays)
        if both:
            listed = ", ".join(d.isoformat() for d in both)
            raise CalendarDataError(
                f"local calendar: {listed} listed both as extra holiday and as extra workday"
            )
        self._use_package = use_package
        self._use_statutory = use_statutory
        self._package_years: dict[int, bool] = {}
        self._answers: dict[date, tuple[bool, Source]] = {}
        self._warned_years: set[int] = set()
        self._warn_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        table_paths: Iterable[Path] = (),
        *,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        shipped_dir: Path = SHIPPED_DIR,
    ) -> WorkdayCalendar:
        """Shipped tables (``shipped_dir``'s) plus config table files; a config file replaces a
        shipped year."""
        shipped = _load_tables(sorted(shipped_dir.glob("*.toml")), "workflow/holidays")
        configured = _load_tables((Path(p) for p in table_paths), "calendar.holiday_tables")
        for year, table in configured.items():
            if year in shipped:
                log.info("holiday table for %d from config replaces the shipped one", year)
            shipped[year] = table
        return cls(shipped, extra_holidays=extra_holidays, extra_workdays=extra_workdays)

    # -- single days --------------------------------------------------------------------

    def _package_answer(self, day: date) -> bool | None:
        """The package's answer, or None where it has no data (learned once per year)."""
        if not self._use_package or self._package_years.get(day.year) is False:
            return None
        try:
            answer = bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            self._package_years[day.year] = False
            return None
        self._package_years[day.year] = True
        return answer

    def _resolve(self, day: date) -> tuple[bool, Source]:
        cached = self._answers.get(day)
        if cached is not None:
            return cached
        if isinstance(day, datetime) or not isinstance(day, date):
            # A datetime's .date() is not necessarily the China-local date; make callers say.
            raise TypeError(
                f"expected a date, got {day!r}; use started.astimezone(CHINA).date() or due_at()"
            )
        answer: tuple[bool, Source]
        if day in self._extra_holidays:
            answer = (False, "local")
        elif day in self._extra_workdays:
            answer = (True, "local")
        elif (table := self._tables.get(day.year)) is not None:
            answer = (table.is_workday(day), "table")
        elif (from_package := self._package_answer(day)) is not None:
            answer = (from_package, "package")
        elif self._use_statutory and day.year >= FIRST_YEAR:
            answer = (day.weekday() < 5 and day not in statutory_set(day.year), "statutory")
        else:
            answer = (day.weekday() < 5, "fallback")
        self._answers[day] = answer
        return answer

    def _warn_once(self, year: int, source: Source) -> None:
        if year in self._warned_years:
            return
        with self._warn_lock:
            if year in self._warned_years:
                return
            self._warned_years.add(year)
        if source == "statutory":
            log.warning(
                "no official holiday table for %d (none in workflow/holidays/ or config, not "
                "covered by chinese_calendar): due dates are PROVISIONAL, counted with the "
                "statutory holidays computed from the law (全国年节及纪念日放假办法) but "
                "without the make-up working days (调休) that only the State Council's notice "
                "sets; import the notice with `mashangyi calendar import`",
                year,
            )
            return
        log.warning(
            "no holiday data for %d (no table in workflow/holidays/ or config, not covered by "
            "chinese_calendar): counting Monday-Friday as working days; add a %d.toml table "
            "from the State Council notice",
            year,
            year,
        )

    def is_workday(self, day: date) -> bool:
        """True if ``day`` (a China-local date) is a working day."""
        answer, source = self._resolve(day)
        if source in PROVISIONAL:
            self._warn_once(day.year, source)
        return answer

    def source(self, day: date) -> Source:
        """Where the answer for ``day`` comes from (for health checks and explanations)."""
        return self._resolve(day)[1]

    # -- counting -----------------------------------------------------------------------

    def add_workdays(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start`` (``start`` itself is not counted)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        day = start
        while n:
            day += _ONE_DAY
            if self.is_workday(day):
                n -= 1
        return day

    def workdays_between(self, start: date, end: date) -> int:
        """Working days ``d`` with ``start < d <= end``; 0 if ``end <= start``."""
        count = 0
        day = start + _ONE_DAY
        while day <= end:
            count += self.is_workday(day)
            day += _ONE_DAY
        return count

    def due(self, started: datetime, n: int = 5) -> DueDate:
        """When a step started at ``started`` is due: the end of its ``n``-th working day,
        with the sources of the days counted (``DueDate.provisional``).

        Days are China-local, so a step started at 23:30 UTC counts from the next China
        date. The end of a day is 00:00 China time of the following calendar day.
        """
        if started.tzinfo is None or started.utcoffset() is None:
            raise ValueError("due_at needs an aware datetime")
        first = started.astimezone(CHINA).date()
        last = self.add_workdays(first, n)
        days = ((first + timedelta(days=i)) for i in range(1, (last - first).days + 1))
        return DueDate(
            at=datetime.combine(last + _ONE_DAY, time(0), tzinfo=CHINA),
            sources=frozenset(self.source(day) for day in days),
        )

    def due_at(self, started: datetime, n: int = 5) -> datetime:
        """``due(started, n).at``."""
        return self.due(started, n).at

    # -- coverage -----------------------------------------------------------------------

    def coverage(self, today: date, horizon: int = 90) -> dict[int, frozenset[Source]]:
        """For each year in ``[today, today + horizon)``: where its days' answers come from."""
        found: dict[int, set[Source]] = {}
        for i in range(max(horizon, 0)):
            day = today + timedelta(days=i)
            found.setdefault(day.year, set()).add(self.source(day))
        return {year: frozenset(sources) for year, sources in found.items()}

    def uncovered_days(self, today: date, horizon: int = 90) -> list[date]:
        """Days in ``[today, today + horizon)`` without official data: answered by the
        provisional statutory holidays or the Monday-Friday fallback."""
        days = (today + timedelta(days=i) for i in range(max(horizon, 0)))
        return [d for d in days if self.source(d) in PROVISIONAL]

    def coverage_warning(self, today: date, horizon: int = 90) -> str | None:
        """One English line for /healthz and the CLI when real data runs out soon, else None."""
        missing = self.uncovered_days(today, horizon)
        if not missing:
            return None
        years = sorted({d.year for d in missing})
        year_list = ", ".join(str(y) for y in years)
        statutory = sum(self.source(d) == "statutory" for d in missing)
        how = []
        if statutory:
            how.append(
                f"{statutory} are PROVISIONAL: statutory holidays computed from the law, "
                "without the make-up working days (调休) only the State Council's notice sets"
            )
        if len(missing) > statutory:
            how.append(f"{len(missing) - statutory} count Monday-Friday only")
        return (
            f"No official holiday data for {year_list}: {len(missing)} day(s) from "
            f"{missing[0].isoformat()} to {missing[-1].isoformat()} within the next {horizon} "
            f"days; {' and '.join(how)}; import the notice with `mashangyi calendar import` "
            "(see workflow/holidays/README.md)."
        )
