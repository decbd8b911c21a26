"""China's statutory public holidays, computed for any year from the law.

全国年节及纪念日放假办法 (revised 2024, in force from 1 January 2025), article 2, gives every
citizen these days off:

- 元旦 New Year's Day, 1 day: 1 January;
- 春节 Spring Festival, 4 days: lunar New Year's Eve (除夕) to the 3rd of the first lunar month;
- 清明节 Qingming, 1 day: the day of the solar term 清明 (4 or 5 April);
- 劳动节 Labour Day, 2 days: 1-2 May;
- 端午节 Dragon Boat Festival, 1 day: the 5th of the 5th lunar month;
- 中秋节 Mid-Autumn Festival, 1 day: the 15th of the 8th lunar month;
- 国庆节 National Day, 3 days: 1-3 October.

Which weekends are swapped around them (调休) only the State Council's annual notice says, so
these days alone are a provisional calendar (workdays.py's ``statutory`` source) and the
floor any imported notice must contain (holiday_notice.py).

The lunar dates and the solar term come from ``lunar-python`` (6tail's lunar: the 寿星天文历
astronomical algorithms, not a lookup table, so it has no end year). Over 1990-2100 it agrees
day for day with lunardate, zhdate and sxtwl on 正月初一, 五月初五 and 八月十五, and with
astronomy-engine's sun longitude of 15° in China time on 清明. 除夕 is taken as the day before
正月初一, which is right whether the 12th lunar month has 29 or 30 days.

Years before 2025 fell under the earlier law (3 Spring Festival days, 1 Labour Day day);
``statutory_days`` refuses them rather than answer with the wrong law.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

from lunar_python import Lunar

__all__ = ["FESTIVALS", "FIRST_YEAR", "Festival", "FestivalDays", "statutory_days", "statutory_set"]

#: The first year the revised law applies to.
FIRST_YEAR = 2025

Festival = Literal[
    "new_year", "spring_festival", "qingming", "labour_day", "dragon_boat", "mid_autumn",
    "national_day",
]  # fmt: skip

#: In the order of the year, as the State Council's notice lists them.
FESTIVALS: tuple[Festival, ...] = (
    "new_year",
    "spring_festival",
    "qingming",
    "labour_day",
    "dragon_boat",
    "mid_autumn",
    "national_day",
)


@dataclass(frozen=True)
class FestivalDays:
    """One festival's statutory days off in one year."""

    festival: Festival
    days: tuple[date, ...]


def _lunar(year: int, month: int, day: int) -> date:
    """The solar date of a (non-leap) lunar month's day in lunar ``year``."""
    solar = Lunar.fromYmd(year, month, day).getSolar()
    return date(solar.getYear(), solar.getMonth(), solar.getDay())


def _qingming(year: int) -> date:
    # The lunar year that starts in ``year``'s January or February holds that April's terms.
    term = Lunar.fromYmd(year, 3, 1).getJieQiTable()["清明"]
    return date(term.getYear(), term.getMonth(), term.getDay())


def _run(first: date, days: int) -> tuple[date, ...]:
    return tuple(first + timedelta(days=i) for i in range(days))


@lru_cache(maxsize=64)
def statutory_days(year: int) -> tuple[FestivalDays, ...]:
    """The statutory days off of ``year`` (from 2025 on), festival by festival."""
    if year < FIRST_YEAR:
        raise ValueError(
            f"the statutory holidays are computed from {FIRST_YEAR} on (the revised law); "
            f"{year} fell under the earlier one"
        )
    new_year = _lunar(year, 1, 1)
    return (
        FestivalDays("new_year", (date(year, 1, 1),)),
        FestivalDays("spring_festival", _run(new_year - timedelta(days=1), 4)),
        FestivalDays("qingming", (_qingming(year),)),
        FestivalDays("labour_day", _run(date(year, 5, 1), 2)),
        FestivalDays("dragon_boat", (_lunar(year, 5, 5),)),
        FestivalDays("mid_autumn", (_lunar(year, 8, 15),)),
        FestivalDays("national_day", _run(date(year, 10, 1), 3)),
    )


@lru_cache(maxsize=64)
def statutory_set(year: int) -> frozenset[date]:
    """All of ``year``'s statutory days off (Mid-Autumn may fall on a National Day day)."""
    return frozenset(day for festival in statutory_days(year) for day in festival.days)
