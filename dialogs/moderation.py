"""The convener's decisions on suggestions: held ones (a sensitive word) and those three
reports hid. 待审建议 (a word and a menu button) lists them; ``md:<id>`` shows one with
公开 / 隐藏; either asks for the reason, then ``workflow.participation.moderate`` decides
(the permission and the audit row are its business). The author hears of the decision.
"""

from __future__ import annotations

from dialogs.conversation import Conversation, say
from dialogs.handlers import Flow, Handlers, on
from dialogs.types import Button
from storage.models import Topic
from storage.participation import Suggestion
from workflow import participation as pt
from workflow.errors import InvalidField, WorkflowError
from workflow.lifecycle import Role
from workflow.payloads import MODERATE, Decision, Payload
from workflow.permissions import Actor, may_moderate

NAME = "moderation"
WORDS = {"待审建议", "/held"}
LIST_SIZE = 8


def _convener_rooms(actor: Actor) -> list[int]:
    return sorted({room_id for room_id, role in actor.grants if role == Role.CONVENER})


async def pending_button(conv: Conversation) -> list[Button]:
    """For the menu: 待审建议, for a convener with something to decide."""
    rooms = _convener_rooms(await conv.actor())
    found = await pt.awaiting_moderation(conv.session, rooms, limit=1)
    return [Button(say("moderation", "menu"), Payload.MENU_MODERATION)] if found else []


async def pending(conv: Conversation) -> None:
    rooms = _convener_rooms(await conv.actor())
    found = await pt.awaiting_moderation(conv.session, rooms, limit=LIST_SIZE)
    if not found:
        conv.reply(say("moderation", "none"))
        return
    conv.reply(
        say("moderation", "list", count=len(found)),
        *[
            Button(_excerpt(s), MODERATE.build(Decision(s.id or 0, "")))
            for s in found
            if s.id is not None
        ],
    )


def _excerpt(s: Suggestion) -> str:
    return s.body if len(s.body) <= 30 else s.body[:30] + "…"


def _status(s: Suggestion) -> str:
    if s.status == pt.Status.HELD:
        return say("moderation", "status_held", word=s.matched or "")
    if s.hidden_by_reports:
        return say("moderation", "status_reported", count=s.reports)
    return say("moderation", f"status_{s.status}")


async def _decidable(conv: Conversation, suggestion_id: int) -> tuple[Suggestion, Topic] | None:
    row = await conv.session.get(Suggestion, suggestion_id)
    topic = await conv.session.get(Topic, row.topic_id) if row else None
    if row is None or topic is None:
        conv.reply(say("public", "suggestion_gone"))
        return None
    if not may_moderate(await conv.actor(), topic):
        conv.reply(say("moderation", "not_permitted"))
        return None
    return row, topic


async def decide(conv: Conversation, decision: Decision) -> None:
    found = await _decidable(conv, decision.suggestion_id)
    if found is None:
        return
    row, topic = found
    if not decision.verb:
        buttons = []
        if row.status != pt.Status.VISIBLE:
            buttons.append(
                Button(say("moderation", "restore"), MODERATE.build(Decision(row.id or 0, "r")))
            )
        if row.status != pt.Status.HIDDEN or row.hidden_by_reports:
            buttons.append(
                Button(say("moderation", "hide"), MODERATE.build(Decision(row.id or 0, "h")))
            )
        conv.reply(
            say(
                "moderation",
                "show",
                number=topic.number,
                title=topic.title,
                body=row.body,
                status=_status(row),
            ),
            *buttons,
        )
        return
    conv.home()
    conv.data[NAME] = {"id": decision.suggestion_id, "hide": decision.verb == "h"}
    conv.goto(NAME, "reason")
    conv.reply(say("moderation", "ask_hide" if decision.verb == "h" else "ask_restore"))


async def reason_step(conv: Conversation) -> None:
    asked = conv.data.get(NAME, {})
    if conv.inbound.kind != "text":
        conv.reply(say("moderation", "reason_needs_text"))
        return
    try:
        row = await pt.moderate(
            conv.session,
            await conv.actor(),
            asked["id"],
            asked["hide"],
            conv.inbound.text,
            conv.now,
        )
    except InvalidField as refusal:  # no reason, too long: ask again
        conv.reply(refusal.message)
        return
    except WorkflowError as refusal:
        conv.home()
        conv.reply(refusal.message)
        return
    conv.home()
    topic = await conv.session.get(Topic, row.topic_id)
    assert topic is not None
    done = "hidden" if asked["hide"] else "restored"
    conv.reply(
        say("moderation", done, title=topic.title),
        Button(say("moderation", "menu"), Payload.MENU_MODERATION),
    )
    # Decided by this message (a decision already in force changes nothing, not even the
    # time): the author hears of it; keyed by the decision, so a retry tells once.
    if row.moderated_at == conv.now and row.person_id != conv.person.id:
        await conv.tell(
            row.person_id,
            f"suggestion.{done}:{row.id}:{row.moderated_at}",
            say(
                "moderation",
                f"author_{done}",
                title=topic.title,
                reason=row.moderation_reason or "",
            ),
            kind=f"suggestion.{done}",
            topic_id=topic.id,
        )


HANDLERS = Handlers(
    NAME,
    commands=[on(Payload.MENU_MODERATION, pending)],
    buttons=[on(MODERATE, decide)],
    words=dict.fromkeys(WORDS, pending),
    flows={NAME: Flow(reason_step)},
)
