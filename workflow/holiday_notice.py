"""Reading the State Council's annual holiday notice into that year's holiday table.

The notice (国务院办公厅关于<year>年部分节假日安排的通知) is published as plain text in a
regular form, one numbered item per festival (or two festivals sharing a holiday):

    二、春节：2月15日（农历腊月二十八、周日）至23日（农历正月初七、周一）放假调休，共9天。2月14日（周六）、2月28日（周六）上班。

Everything else in it (the preamble, the closing paragraph, the signature) is skipped. What
is read is checked as a person would: every weekday written in brackets must be the date's,
every "共N天" must be the range's length, every make-up working day (上班) a weekend day,
no day listed twice, each festival of the law in exactly one item, and each festival's
statutory days (statutory.py) among its days off. A refusal names the line, in Chinese, for
whoever pasted the notice.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from workflow.statutory import FESTIVALS, FIRST_YEAR, Festival, statutory_days
from workflow.texts import label, text
from workflow.workdays import CalendarDataError, YearTable

__all__ = ["Notice", "NoticeError", "NoticeItem", "parse_notice", "summary", "weekday_name"]

_WEEKDAYS = "一二三四五六日"
_MAX_RANGE_DAYS = 15  # the longest holiday so far is 8-9 days; a longer range is a typo

# On NFKC-normalised text: full-width digits, brackets and colons become ASCII.
_TITLE = re.compile(r"关于(\d{4})年部分节假日安排的通知")
_DOCUMENT_NUMBER = re.compile(r"国办发明电〔\d{4}〕\d+号")
_ITEM = re.compile(r"^\s*[一二三四五六七八九十]+、\s*([^:]+?)\s*:\s*(.+?)\s*$")
_DATE = r"(?:(\d{4})年)?(?:(\d{1,2})月)?(\d{1,2})日(?:\(([^)]*)\))?"
_DATE_RE = re.compile(_DATE)
_DAYS_OFF = re.compile(rf"^(?P<first>{_DATE})(?:至(?P<last>{_DATE}))?放假(?P<rest>.*)$")
_COUNT = re.compile(r"(?:^|,|共)(\d+)天")
_WORKING = re.compile(r"^(?P<dates>.+)上班$")


class NoticeError(CalendarDataError):
    """A notice that cannot be read or contradicts itself or the law (message in Chinese)."""


def weekday_name(day: date) -> str:
    return f"周{_WEEKDAYS[day.weekday()]}"


def month_day(day: date) -> str:
    return f"{day.month}月{day.day}日（{weekday_name(day)}）"


@dataclass(frozen=True)
class NoticeItem:
    """One numbered item: the festivals it names, their days off and make-up working days.

    ``outside`` holds days the item gives in the year before or after (a New Year holiday
    starting on 31 December): that year's table has them, this one cannot.
    """

    line: int
    festivals: tuple[Festival, ...]
    holidays: tuple[date, ...]
    workdays: tuple[date, ...]
    outside: tuple[date, ...]


@dataclass(frozen=True)
class Notice:
    year: int
    source: str
    items: tuple[NoticeItem, ...]

    def table(self) -> YearTable:
        return YearTable(
            year=self.year,
            holidays=frozenset(d for item in self.items for d in item.holidays),
            workdays=frozenset(d for item in self.items for d in item.workdays),
            source=self.source,
        )

    def toml(self, origin: str) -> str:
        """The table in workflow/holidays/README.md's format, commented by festival."""
        out = [
            f"# From {origin} by `mashangyi calendar import`; check it against the notice.",
            f"year = {self.year}",
            f"source = {json.dumps(self.source, ensure_ascii=False)}",  # TOML's escapes
            "",
            "holidays = [",
        ]
        for item in self.items:
            out.append(f"  # {names(item)}")
            out.append("  " + " ".join(f"{d.isoformat()}," for d in item.holidays))
        out += ["]", "", "workdays = ["]
        for item in self.items:
            out += [f"  {d.isoformat()},  # {names(item)}" for d in item.workdays]
        out += ["]", ""]
        return "\n".join(out)


def names(item: NoticeItem) -> str:
    return "、".join(label("festivals", f) for f in item.festivals)


def _fail(line: int | None, key: str, **params: object) -> NoticeError:
    problem = text("holiday_notice", key, **params)
    if line is None:
        return NoticeError(problem)
    return NoticeError(text("holiday_notice", "line", line=line, problem=problem))


def parse_notice(raw: str, year: int | None = None) -> Notice:
    """Read the notice's text; ``year`` is needed only when the title is not in it."""
    lines = [unicodedata.normalize("NFKC", line) for line in raw.splitlines()]
    title = next((m for line in lines if (m := _TITLE.search(line))), None)
    if title is None and year is None:
        raise _fail(None, "no_year")
    if title is not None and year is not None and int(title.group(1)) != year:
        raise _fail(None, "year_mismatch", title=title.group(1), given=year)
    year = int(title.group(1)) if title is not None else year
    assert year is not None
    if year < FIRST_YEAR:
        raise _fail(None, "old_law", year=year)
    source = f"国务院办公厅关于{year}年部分节假日安排的通知"
    if number := next((m for line in lines if (m := _DOCUMENT_NUMBER.search(line))), None):
        source += f" ({number.group(0)})"

    known = {label("festivals", f): f for f in FESTIVALS}
    items: list[NoticeItem] = []
    for line_number, line in enumerate(lines, start=1):
        if (match := _ITEM.match(line)) is not None:
            items.append(_item(line_number, match.group(1), match.group(2), year, known))
    if not items:
        raise _fail(None, "no_items")
    _check(items, year)
    return Notice(year=year, source=source, items=tuple(items))


def _item(line: int, heading: str, body: str, year: int, known: dict[str, Festival]) -> NoticeItem:
    festivals: list[Festival] = []
    for name in heading.split("、"):
        if name.strip() not in known:
            raise _fail(line, "unknown_festival", name=name, known="、".join(known))
        festivals.append(known[name.strip()])
    holidays: list[date] = []
    workdays: list[date] = []
    for sentence in (s.strip() for s in body.split("。")):
        if not sentence:
            continue
        if (off := _DAYS_OFF.match(sentence)) is not None:
            holidays += _days_off(line, off, year)
        elif (on := _WORKING.match(sentence)) is not None:
            workdays += _working_days(line, on.group("dates"), year)
        else:
            raise _fail(line, "unreadable", sentence=sentence)
    return NoticeItem(
        line=line,
        festivals=tuple(festivals),
        holidays=tuple(d for d in holidays if d.year == year),
        workdays=tuple(d for d in workdays if d.year == year),
        outside=tuple(d for d in (*holidays, *workdays) if d.year != year),
    )


def _date(line: int, written: str, year: int, month: int | None) -> date:
    """A date as written, its year and month defaulting to the ones before it."""
    match = _DATE_RE.fullmatch(written.strip())
    if match is None:
        raise _fail(line, "bad_date", text=written)
    y, m, d, note = match.groups()
    try:
        day = date(int(y) if y else year, int(m) if m else (month or 0), int(d))
    except ValueError:
        raise _fail(line, "bad_date", text=written) from None
    if abs(day.year - year) > 1:
        raise _fail(line, "range_far_year", text=written, year=day.year, notice=year)
    if note and (weekday := re.search(r"(?:周|星期)([一二三四五六日天])", note)):
        written_day = _WEEKDAYS.index(weekday.group(1).replace("天", "日"))
        if written_day != day.weekday():
            raise _fail(
                line,
                "wrong_weekday",
                date=day.isoformat(),
                actual=weekday_name(day),
                written=f"周{_WEEKDAYS[written_day]}",
            )
    return day


def _days_off(line: int, match: re.Match[str], year: int) -> list[date]:
    written = match.group(0).split("放假")[0]
    first = _date(line, match.group("first"), year, None)
    last = first
    if match.group("last"):
        last = _date(line, match.group("last"), first.year, first.month)
    if last < first:
        raise _fail(line, "range_backwards", text=written)
    length = (last - first).days + 1
    if length > _MAX_RANGE_DAYS:
        raise _fail(line, "range_too_long", text=written, days=length)
    if (count := _COUNT.search(match.group("rest"))) is not None and int(count.group(1)) != length:
        raise _fail(line, "wrong_count", text=written, days=length, count=count.group(1))
    return [first + timedelta(days=i) for i in range(length)]


def _working_days(line: int, listed: str, year: int) -> list[date]:
    days: list[date] = []
    month: int | None = None
    for part in listed.split("、"):
        day = _date(line, part, year, month)
        month = day.month
        if day.weekday() < 5:
            raise _fail(line, "not_weekend", date=day.isoformat(), weekday=weekday_name(day))
        days.append(day)
    return days


def _check(items: Iterable[NoticeItem], year: int) -> None:
    """Across items: each day once, each festival once, and the law's days all off."""
    seen: dict[date, int] = {}
    for item in items:
        for day in (*item.holidays, *item.outside, *item.workdays):
            if day in seen:
                raise _fail(item.line, "listed_twice", date=day.isoformat(), first=seen[day])
            seen[day] = item.line
    by_festival: dict[Festival, NoticeItem] = {}
    for item in items:
        for festival in item.festivals:
            if festival in by_festival:
                first = by_festival[festival].line
                raise _fail(
                    item.line, "duplicate_festival", name=label("festivals", festival), first=first
                )
            by_festival[festival] = item
    for law in statutory_days(year):
        found = by_festival.get(law.festival)
        if found is None:
            raise _fail(None, "missing_festival", name=label("festivals", law.festival))
        for day in law.days:
            if day not in found.holidays:
                raise _fail(
                    found.line,
                    "missing_statutory",
                    name=label("festivals", law.festival),
                    date=day.isoformat(),
                )


def _runs(days: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) pairs."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _dates(days: Iterable[date]) -> str:
    return "、".join(
        month_day(first) if first == last else f"{month_day(first)}至{month_day(last)}"
        for first, last in _runs(days)
    )


def summary(notice: Notice) -> list[str]:
    """What was read, festival by festival, for a person to check against the notice."""
    lines = [notice.source]
    for item in notice.items:
        workdays = _dates(item.workdays)
        line = text(
            "holiday_notice",
            "summary_item",
            names=names(item),
            ranges=_dates((*item.outside, *item.holidays)),
            days=len(item.holidays) + len(item.outside),
            workdays=text("holiday_notice", "summary_workdays", dates=workdays) if workdays else "",
        )
        if item.outside:
            line += text(
                "holiday_notice",
                "summary_outside",
                dates=_dates(item.outside),
                year=item.outside[0].year,
            )
        lines.append(line)
    table = notice.table()
    lines.append(
        text(
            "holiday_notice",
            "summary_total",
            holidays=len(table.holidays),
            workdays=len(table.workdays),
        )
    )
    return lines
