"""One rule for "waited N working days, due by D": the card and the to-do list
(workflow/waiting.py) and the sweep's cached StepClock (workflow/overdue.py) agree."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from workflow.clock import CHINA
from workflow.overdue import OverdueStep, StepClock
from workflow.waiting import review_wait
from workflow.workdays import WorkdayCalendar

CALENDAR = WorkdayCalendar.load()


def china(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=CHINA)


@pytest.mark.parametrize(
    ("started", "today", "waited"),
    [
        (date(2026, 11, 27), date(2026, 11, 30), 1),  # Friday → Monday: one working day
        (date(2026, 11, 30), date(2026, 11, 30), 0),  # the same day: none yet
        (date(2026, 9, 30), date(2026, 10, 9), 2),  # the 8th and 9th, after National Day (1st–7th)
    ],
)
def test_the_card_the_to_do_list_and_the_sweep_count_the_same_days(
    started: date, today: date, waited: int
) -> None:
    started_at, now = china(started, 9), china(today, 23)
    due_at = china(CALENDAR.add_workdays(started, 5) + timedelta(days=1), 0)
    wait = review_wait(CALENDAR, started_at, due_at, now)
    step = OverdueStep(1, "X-1", "t", "pending_review", 1, None, started_at, due_at)
    clock = StepClock(CALENDAR, today, escalate_after_days=5)
    assert wait.waited == clock.waited(step) == waited
    assert wait.due_by == clock.due_on(step)


def test_due_by_is_the_last_day_of_the_window_and_overdue_starts_at_its_end() -> None:
    due_at = china(date(2026, 12, 8), 0)  # exclusive: the window's last day is the 7th
    started_at = due_at - timedelta(days=7)
    just_before = review_wait(CALENDAR, started_at, due_at, due_at - timedelta(seconds=1))
    at_the_end = review_wait(CALENDAR, started_at, due_at, due_at)
    assert just_before.due_by == at_the_end.due_by == date(2026, 12, 7)
    assert (just_before.overdue, at_the_end.overdue) == (False, True)
