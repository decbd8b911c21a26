"""How long a review step has waited and when it is due, one rule for every place that
says so (the card, the to-do list; the sweep's ``overdue.StepClock`` applies the same rule
with a cache per day, since it asks it for thousands of steps at once).

Waited: the working days after the China-local day the step started, up to today. Due by:
the last China-local day of the window (``review_due_at`` is exclusive). Overdue: the window
has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from workflow.clock import CHINA, last_day
from workflow.workdays import WorkdayCalendar


@dataclass(frozen=True)
class Wait:
    waited: int
    due_by: date
    overdue: bool


def review_wait(
    calendar: WorkdayCalendar, started_at: datetime, due_at: datetime, now: datetime
) -> Wait:
    waited = calendar.workdays_between(
        started_at.astimezone(CHINA).date(), now.astimezone(CHINA).date()
    )
    return Wait(waited, last_day(due_at), due_at <= now)
