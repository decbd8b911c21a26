"""The meeting time in the convener's review step (``schedule_meeting``'s first field):
understood as people write it (workflow/when.py) and checked at once — past, before
suggestions close, earlier than a week after publication — before anything else is asked,
then said back with the weekday and how many registered remote participants it puts in
their night, to be confirmed with a button (or another time typed instead)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dialogs.conversation import SAY, Conversation, say
from dialogs.types import Button
from storage.models import Topic
from workflow.errors import InvalidField
from workflow.meetings import night_count
from workflow.payloads import Payload
from workflow.publication import check_meeting_time
from workflow.when import parse_when, say_when

PENDING = "pending_time"


async def take(conv: Conversation, review: dict[str, Any], text: str) -> bool:
    """A typed time: False (refused and said why) or True (said back, confirmation asked)."""
    topic = await conv.session.get(Topic, review["topic"])
    assert topic is not None and topic.id is not None
    try:
        moment = parse_when(text, conv.now)
        check_meeting_time(topic, moment, conv.now)
    except InvalidField as refusal:
        conv.reply(refusal.message + "\n" + say("meeting", "ask_time"))
        return False
    review[PENDING] = moment.isoformat()
    night = await night_count(conv.session, topic.id, moment)
    conv.reply(
        say("meeting", "confirm_time", when=say_when(moment, now=conv.now))
        + (say("meeting", "night", count=night) if night else say("meeting", "no_night"))
        + say("meeting", "confirm_hint"),
        Button(SAY.label("buttons_meeting", "confirm_time"), Payload.REVIEW_DONE),
    )
    return True


def confirmed(review: dict[str, Any]) -> datetime | None:
    """The time said back, once its confirmation is pressed."""
    pending = review.pop(PENDING, None)
    return datetime.fromisoformat(pending) if pending else None


def ask(conv: Conversation) -> None:
    conv.reply(say("meeting", "ask_time"))
