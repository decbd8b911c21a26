"""我的议题: my topics with their state in plain Chinese, details, history, withdraw."""

from __future__ import annotations

from sqlmodel import col, select

from dialogs.conversation import Conversation, button, say
from dialogs.handlers import Handlers, on
from dialogs.types import Button
from storage.models import Room, Topic, TopicEvent
from workflow.clock import CHINA, last_day
from workflow.errors import WorkflowError
from workflow.payloads import TOPIC, WITHDRAW, WITHDRAW_YES, Payload
from workflow.permissions import visible_topic
from workflow.texts import by_day, label

NAME = "my_topics"
LIST_SIZE = 10
#: Typed anywhere, these open the list.
MINE_WORDS = {"我的议题", "/mine"}


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
        conv.reply(say("mine", "none"), button("submit", Payload.MENU_SUBMIT))
        return
    conv.reply(
        say("mine", "list", count=len(topics)),
        *[_item(t) for t in topics],
    )


def _item(topic: Topic) -> Button:
    assert topic.id is not None
    return Button(
        say("mine", "item", title=topic.title, state=label("states", topic.state)),
        TOPIC.build(topic.id),
    )


async def _visible(conv: Conversation, topic_id: int) -> Topic | None:
    topic = await visible_topic(conv.session, await conv.actor(), topic_id)
    if topic is None:
        conv.reply(say("mine", "not_found"))
    return topic


async def open_topic(conv: Conversation, topic_id: int) -> None:
    if (topic := await _visible(conv, topic_id)) is not None:
        await show(conv, topic)


async def ask_withdraw(conv: Conversation, topic_id: int) -> None:
    if (topic := await _visible(conv, topic_id)) is not None:
        conv.goto(NAME, "withdraw")
        conv.reply(
            say("mine", "confirm_withdraw", title=topic.title),
            button("withdraw_yes", WITHDRAW_YES.build(topic_id)),
            button("back", Payload.MENU_MINE),
        )


async def confirm_withdraw(conv: Conversation, topic_id: int) -> None:
    if (topic := await _visible(conv, topic_id)) is not None:
        await withdraw(conv, topic)


async def show(conv: Conversation, topic: Topic) -> None:
    assert topic.id is not None
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
    buttons = [button("withdraw", WITHDRAW.build(topic.id))] if "withdraw" in actions else []
    conv.reply("\n".join(lines), *buttons, button("back", Payload.MENU_MINE))


async def withdraw(conv: Conversation, topic: Topic) -> None:
    try:
        await conv.lifecycle.apply(conv.session, topic, "withdraw", await conv.actor())
    except WorkflowError as refusal:  # e.g. published meanwhile: say why, change nothing
        conv.reply(refusal.message, button("back", Payload.MENU_MINE))
        return
    conv.home()
    conv.reply(say("mine", "withdrawn", title=topic.title), button("mine", Payload.MENU_MINE))


HANDLERS = Handlers(
    "my_topics",
    commands=[on(Payload.MENU_MINE, begin)],
    buttons=[on(TOPIC, open_topic), on(WITHDRAW, ask_withdraw), on(WITHDRAW_YES, confirm_withdraw)],
    words=dict.fromkeys(MINE_WORDS, begin),
)
