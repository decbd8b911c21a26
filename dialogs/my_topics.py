"""我的议题: my topics with their state in plain Chinese, details, history, withdraw."""

from __future__ import annotations

from sqlmodel import col, select

from dialogs.conversation import Conversation, button, say
from dialogs.types import Button
from storage.models import Room, Topic, TopicEvent
from workflow.clock import CHINA, last_day
from workflow.errors import WorkflowError
from workflow.permissions import visible_topic
from workflow.texts import by_day, label

NAME = "my_topics"
LIST_SIZE = 10


async def begin(conv: Conversation) -> None:
    conv.goto(NAME, "list")
    topics = (
        await conv.session.exec(
            select(Topic)
            .where(Topic.submitter_id == conv.person.id)
            .order_by(col(Topic.created_at).desc(), col(Topic.id).desc())
            .limit(LIST_SIZE)
        )
    ).all()
    if not topics:
        conv.reply(say("mine", "none"), button("submit", "m:submit"))
        return
    conv.reply(
        say("mine", "list", count=len(topics)),
        *[
            Button(say("mine", "item", title=t.title, state=label("states", t.state)), f"t:{t.id}")
            for t in topics
        ],
    )


async def on_message(conv: Conversation) -> bool:
    """Opening a topic, asking to withdraw it, confirming; False if not for this flow."""
    payload = conv.inbound.payload if conv.inbound.kind == "button" else ""
    kind, _, ref = payload.partition(":")
    if kind not in ("t", "w", "wy") or not ref.isdigit():
        return False
    topic = await visible_topic(conv.session, await conv.actor(), int(ref))
    if topic is None:
        conv.reply(say("mine", "not_found"))
    elif kind == "t":
        await show(conv, topic)
    elif kind == "w":
        conv.goto(NAME, "withdraw")
        conv.reply(
            say("mine", "confirm_withdraw", title=topic.title),
            button("withdraw_yes", f"wy:{topic.id}"),
            button("back", "m:mine"),
        )
    else:
        await withdraw(conv, topic)
    return True


async def show(conv: Conversation, topic: Topic) -> None:
    conv.goto(NAME, "detail")
    room = await conv.session.get(Room, topic.room_id)
    events = (
        await conv.session.exec(
            select(TopicEvent).where(TopicEvent.topic_id == topic.id).order_by(col(TopicEvent.seq))
        )
    ).all()
    due = ""
    if topic.review_due_at is not None:
        day = last_day(topic.review_due_at)
        due = say("mine", "due", by=by_day(day))
    lines = [
        say(
            "mine",
            "detail",
            number=topic.number,
            title=topic.title,
            room=room.name if room else "",
            state=label("states", topic.state),
            due=due,
        ),
        say("mine", "history_title"),
    ]
    lines += [
        say(
            "mine",
            "history_item",
            when=e.at.astimezone(CHINA).strftime("%m-%d %H:%M"),
            action=label("actions", e.action),
        )
        for e in events
    ]
    actions = await conv.lifecycle.available_actions(conv.session, topic, await conv.actor())
    buttons = [button("withdraw", f"w:{topic.id}")] if "withdraw" in actions else []
    conv.reply("\n".join(lines), *buttons, button("back", "m:mine"))


async def withdraw(conv: Conversation, topic: Topic) -> None:
    try:
        await conv.lifecycle.apply(conv.session, topic, "withdraw", await conv.actor())
    except WorkflowError as refusal:  # e.g. published meanwhile: say why, change nothing
        conv.reply(refusal.message, button("back", "m:mine"))
        return
    conv.home()
    conv.reply(say("mine", "withdrawn", title=topic.title), button("mine", "m:mine"))
