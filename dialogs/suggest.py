"""提建议 (跟帖建议): the button asks for the text, the next text message is the suggestion.

One message is one suggestion (its key is the message's id), so a retried message adds
nothing. Over 500 characters is refused with the limit and the question stays open; a
suggestion with a word of the sensitive-word list waits for the convener (its author is
told it awaits review, the room's conveners are told to decide).
"""

from __future__ import annotations

import secrets

from dialogs.conversation import Conversation, say
from dialogs.handlers import Flow, Handlers, on
from dialogs.public_topics import notify_offer, public_button, tell_conveners, view
from storage.models import Topic
from workflow import participation as pt
from workflow.errors import InvalidField, WorkflowError
from workflow.payloads import PUBLIC_TOPIC, SUGGEST

NAME = "suggest"


async def begin(conv: Conversation, topic_id: int) -> None:
    topic = await pt.public_topic(conv.session, topic_id=topic_id)
    if topic is None:
        conv.reply(say("public", "not_found"))
        return
    if not pt.suggestions_open(topic, conv.now):
        await view(conv, topic, say("public", "closed"))
        return
    conv.home()
    conv.data[NAME] = {"topic": topic_id}
    conv.goto(NAME, "text")
    conv.reply(
        say("suggest", "ask", title=topic.title, limit=pt.SUGGESTION_MAX),
        public_button("back", PUBLIC_TOPIC.build(topic_id)),
    )


def _key(conv: Conversation) -> str:
    """The message's identity: the same message delivered again is the same suggestion."""
    inbound = conv.inbound
    if inbound.message_id:
        return f"{inbound.channel}:{inbound.message_id}"
    return f"{inbound.channel}:{inbound.user_ref}:{secrets.token_hex(8)}"


async def text_step(conv: Conversation) -> None:
    inbound = conv.inbound
    topic_id = conv.data.get(NAME, {}).get("topic")
    topic = await conv.session.get(Topic, topic_id) if isinstance(topic_id, int) else None
    if topic is None:
        conv.home()
        conv.reply(say("public", "not_found"))
        return
    back = public_button("back", PUBLIC_TOPIC.build(topic.id or 0))
    if inbound.kind != "text":
        conv.reply(say("suggest", "needs_text"), back)
        return
    assert conv.person.id is not None
    try:
        row = await pt.suggest(
            conv.session, conv.person.id, topic, inbound.text, _key(conv), conv.words, conv.now
        )
    except InvalidField as refusal:  # too long, empty: ask again
        conv.reply(say("suggest", "again", problem=refusal.message), back)
        return
    except WorkflowError as refusal:  # closed meanwhile
        conv.home()
        conv.reply(refusal.message, back)
        return
    conv.home()
    if row.status == pt.Status.HELD:
        await tell_conveners(conv, topic, row, "held_notice")
        conv.reply(say("suggest", "held") + await notify_offer(conv, topic), back)
    else:
        await view(conv, topic, say("suggest", "posted") + await notify_offer(conv, topic))


HANDLERS = Handlers(
    NAME,
    buttons=[on(SUGGEST, begin)],
    flows={NAME: Flow(text_step)},
)
