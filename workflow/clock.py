"""Time, injected: nothing in the project reads the system clock except ``SystemClock``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

#: Working days, office hours and due dates are all reckoned in China time.
CHINA = ZoneInfo("Asia/Shanghai")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to (tests, demo data, benchmarks)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = moment

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def last_day(due_at: datetime) -> date:
    """The last China-local day of a window that ends (exclusively) at ``due_at``."""
    return (due_at.astimezone(CHINA) - timedelta(microseconds=1)).date()


def deadline_at(day: date) -> datetime:
    """The end of ``day``, China time: a deadline window ends (exclusively) at it, so that
    ``last_day`` gives ``day`` back."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=CHINA)
