"""The dates publication sets (Yancheng norms §14): suggestions close on a day after the
one it is published on, and the meeting is held no earlier than a week after publication,
not before suggestions close and not in the past.

Checked by ``Lifecycle.apply`` after the fields are coerced, so the chat, the review page
and the command line are refused alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any

from storage.models import Topic
from workflow.clock import CHINA
from workflow.errors import InvalidField
from workflow.lifecycle import MEETING_AFTER_PUBLICATION, Transition
from workflow.participation import suggestions_close_at
from workflow.texts import label
from workflow.when import say_when


def check_timing(
    transition: Transition, topic: Topic, values: Mapping[str, Any], now: datetime
) -> None:
    """Refuse a publication closing suggestions today or earlier, and a meeting earlier
    than a week after publication."""
    close = values.get("suggestions_close")
    if close is not None and close <= now.astimezone(CHINA).date():
        raise InvalidField("close_too_early", field=label("fields", "suggestions_close"))
    meeting = values.get("time")
    if transition.action == "schedule_meeting" and meeting is not None:
        check_meeting_time(topic, meeting, now)


def check_meeting_time(topic: Topic, meeting: datetime, now: datetime) -> None:
    """Refuse a meeting time in the past, before the topic's suggestions close, or earlier
    than a week after publication (the dialog asks this first, before anything else)."""
    field = label("fields", "time")
    if meeting <= now:
        raise InvalidField("time_past", field=field, when=say_when(meeting, now=now))
    closes = suggestions_close_at(topic)
    if closes is not None and meeting < closes:
        last = closes.astimezone(CHINA) - timedelta(microseconds=1)
        raise InvalidField(
            "time_before_close",
            field=field,
            close=f"{last.month}月{last.day}日24时"
            if closes.astimezone(CHINA).time() == time()
            else say_when(closes, now=now),
            when=say_when(meeting, now=now),
        )
    if topic.published_at:
        earliest = topic.published_at + MEETING_AFTER_PUBLICATION
        if meeting < earliest:
            raise InvalidField(
                "meeting_too_early",
                field=label("fields", "time"),
                earliest=f"{earliest.astimezone(CHINA):%Y-%m-%d %H:%M}",
            )
