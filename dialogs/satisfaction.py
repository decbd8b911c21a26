"""问题解决了吗？ in the chat: the buttons 满意 / 基本满意 / 不满意 (``sa:<topic>:<n>``) sent
with the notice that a topic is implemented, its push and the sweep's second asking.

满意 and 基本满意 are recorded at once. 不满意 first asks why (a text, not empty); the
submitter's then reopens the topic for the convener (workflow/satisfaction.py decides).
Every refusal changes nothing: a topic not (or no longer) implemented, a person who is
neither its submitter nor of its public, a second, different answer.
"""

from __future__ import annotations

from dialogs.conversation import Conversation, say
from dialogs.handlers import Flow, Handlers, on
from storage.models import Topic
from workflow import satisfaction
from workflow.errors import WorkflowError
from workflow.payloads import SATISFACTION, Pair
from workflow.texts import label

NAME = "satisfaction"


async def press(conv: Conversation, pressed: Pair) -> None:
    given = satisfaction.answer_of(pressed)
    topic = await conv.session.get(Topic, pressed.first)
    if given is None or topic is None:
        conv.reply(say("common", "stale_button"))
        return
    if given == satisfaction.DISSATISFIED:
        assert conv.person.id is not None
        try:
            await satisfaction.may_answer(conv.session, topic, conv.person.id)
        except WorkflowError as refusal:
            conv.reply(refusal.message)
            return
        conv.home()
        conv.data[NAME] = {"topic": topic.id, "round": satisfaction.round_of(topic).isoformat()}
        conv.goto(NAME, "reason")
        conv.reply(say("satisfaction", "ask_reason", title=topic.title))
        return
    await _record(conv, topic, given)


async def reason(conv: Conversation) -> None:
    """The reason for 不满意: any text, not empty; anything else asks again."""
    asked = conv.data[NAME]
    topic = await conv.session.get(Topic, asked["topic"])
    assert topic is not None
    if satisfaction.round_of(topic).isoformat() != asked["round"]:  # it moved on meanwhile
        conv.home()
        conv.reply(say("satisfaction", "moved_on", state=label("states", topic.state)))
        return
    if conv.inbound.kind != "text" or not conv.inbound.text.strip():
        conv.reply(say("satisfaction", "reason_needed"))
        return
    await _record(conv, topic, satisfaction.DISSATISFIED, conv.inbound.text)


async def _record(conv: Conversation, topic: Topic, given: str, why: str = "") -> None:
    try:
        done = await satisfaction.answer(
            conv.session, conv.lifecycle, topic, await conv.actor(), given, conv.now, why
        )
    except WorkflowError as refusal:
        if refusal.key not in ("satisfaction_reason", "too_long"):
            conv.home()  # nothing more to ask: the answer cannot be taken (a reason can)
        conv.reply(refusal.message)
        return
    conv.home()
    key = "reopened" if done.reopened else "again" if done.again else "thanks"
    conv.reply(say("satisfaction", key, answer=label("satisfaction", done.answer)))


HANDLERS = Handlers(
    NAME,
    commands=[on(SATISFACTION, press)],
    flows={NAME: Flow(reason)},
)
