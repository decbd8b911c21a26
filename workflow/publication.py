"""The dates publication sets (Yancheng norms §14): suggestions close on a day after the
one it is published on, and the meeting is held no earlier than a week after publication.

Checked by ``Lifecycle.apply`` after the fields are coerced, so the chat, the review page
and the command line are refused alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from storage.models import Topic
from workflow.clock import CHINA
from workflow.errors import InvalidField
from workflow.lifecycle import MEETING_AFTER_PUBLICATION, Transition
from workflow.texts import label


def check_timing(
    transition: Transition, topic: Topic, values: Mapping[str, Any], now: datetime
) -> None:
    """Refuse a publication closing suggestions today or earlier, and a meeting earlier
    than a week after publication."""
    close = values.get("suggestions_close")
    if close is not None and close <= now.astimezone(CHINA).date():
        raise InvalidField("close_too_early", field=label("fields", "suggestions_close"))
    meeting = values.get("time")
    if transition.action == "schedule_meeting" and meeting is not None and topic.published_at:
        earliest = topic.published_at + MEETING_AFTER_PUBLICATION
        if meeting < earliest:
            raise InvalidField(
                "meeting_too_early",
                field=label("fields", "time"),
                earliest=f"{earliest.astimezone(CHINA):%Y-%m-%d %H:%M}",
            )
