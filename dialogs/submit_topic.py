"""提议题: title → description → optional photos/voice/location → optional phone →
summary (confirm / edit / cancel) → receipt with the topic number and the review date."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import col, update

from dialogs.conversation import Conversation, button, say
from storage.models import Attachment
from workflow.clock import last_day
from workflow.errors import WorkflowError
from workflow.lifecycle import BACKGROUND_MAX, TITLE_MAX

NAME = "submit_topic"
MAX_ATTACHMENTS = 9
#: Mainland mobile numbers; spaces, dashes and a +86 prefix are tolerated.
PHONE = re.compile(r"1[3-9]\d{9}")


async def begin(conv: Conversation) -> None:
    conv.state.data = {"room": conv.data["room"], "draft": {"attachments": []}}
    await ask_title(conv)


async def ask_title(conv: Conversation) -> None:
    conv.goto(NAME, "title")
    conv.reply(say("submit", "ask_title", limit=TITLE_MAX))


def draft(conv: Conversation) -> dict[str, Any]:
    return conv.data["draft"]


async def on_message(conv: Conversation) -> None:
    await STEPS[conv.state.step](conv)


# -- steps ----------------------------------------------------------------------------


async def title(conv: Conversation) -> None:
    text = _text(conv, TITLE_MAX, "title_needs_text")
    if text is None:
        return
    draft(conv)["title"] = text
    if await _back_to_summary(conv):
        return
    conv.goto(NAME, "description")
    conv.reply(say("submit", "ask_description", limit=BACKGROUND_MAX))


async def description(conv: Conversation) -> None:
    inbound = conv.inbound
    if inbound.kind == "voice" and inbound.media and inbound.media.recognition:
        await _attach(conv, "voice")
        text = inbound.media.recognition.strip()
    else:
        text = _text(conv, BACKGROUND_MAX, "description_needs_text")
        if text is None:
            return
    draft(conv)["description"] = text
    if await _back_to_summary(conv):
        return
    conv.goto(NAME, "extras")
    conv.reply(say("submit", "ask_extras", limit=MAX_ATTACHMENTS), button("next", "s:next"))


async def extras(conv: Conversation) -> None:
    inbound = conv.inbound
    if _pressed(conv, "s:next", "下一步"):
        await ask_phone(conv)
    elif inbound.kind in ("image", "voice"):
        if len(draft(conv)["attachments"]) >= MAX_ATTACHMENTS:
            conv.reply(
                say("submit", "too_many_attachments", limit=MAX_ATTACHMENTS),
                button("next", "s:next"),
            )
            return
        await _attach(conv, "image" if inbound.kind == "image" else "voice")
        key = "photo_received" if inbound.kind == "image" else "voice_received"
        conv.reply(
            say("submit", key, count=len(draft(conv)["attachments"])), button("next", "s:next")
        )
    elif inbound.kind == "location" and inbound.location:
        where = inbound.location
        draft(conv)["location"] = {
            "latitude": where.latitude,
            "longitude": where.longitude,
            "label": where.label,
        }
        conv.reply(
            say(
                "submit",
                "location_received",
                label=where.label or f"{where.latitude:.5f}, {where.longitude:.5f}",
            ),
            button("next", "s:next"),
        )
    else:
        conv.reply(say("submit", "ask_extras", limit=MAX_ATTACHMENTS), button("next", "s:next"))


async def ask_phone(conv: Conversation) -> None:
    conv.goto(NAME, "phone")
    conv.reply(say("submit", "ask_phone"), button("skip", "s:skip"))


async def phone(conv: Conversation) -> None:
    if _pressed(conv, "s:skip", "跳过"):
        draft(conv)["phone"] = None
    else:
        digits = re.sub(r"[\s-]", "", conv.inbound.text).removeprefix("+86")
        if conv.inbound.kind != "text" or not PHONE.fullmatch(digits):
            conv.reply(say("submit", "bad_phone"), button("skip", "s:skip"))
            return
        draft(conv)["phone"] = digits
    await summary(conv)


async def summary(conv: Conversation) -> None:
    conv.goto(NAME, "confirm")
    d = draft(conv)
    room = await conv.room()
    none = say("submit", "none")
    location = d.get("location")
    conv.reply(
        say(
            "submit",
            "summary",
            room=room.name if room else none,
            title=d["title"],
            description=d["description"],
            attachments=len(d["attachments"]),
            location=(
                location.get("label") or f"{location['latitude']:.5f}, {location['longitude']:.5f}"
            )
            if location
            else none,
            phone=d.get("phone") or none,
        ),
        button("confirm", "s:confirm"),
        button("edit", "s:edit"),
        button("cancel", "s:cancel"),
    )


async def confirm(conv: Conversation) -> None:
    if _pressed(conv, "s:confirm", "确认", "确认提交"):
        await _submit(conv)
    elif _pressed(conv, "s:edit", "修改"):
        conv.goto(NAME, "edit")
        conv.reply(
            say("submit", "choose_edit"),
            button("edit_title", "e:title"),
            button("edit_description", "e:description"),
            button("edit_phone", "e:phone"),
        )
    elif _pressed(conv, "s:cancel"):
        conv.home()
        conv.reply(say("common", "cancelled"))
    else:
        await summary(conv)


async def edit(conv: Conversation) -> None:
    draft(conv)["editing"] = True
    if _pressed(conv, "e:title", "改标题"):
        await ask_title(conv)
    elif _pressed(conv, "e:description", "改描述"):
        conv.goto(NAME, "description")
        conv.reply(say("submit", "ask_description", limit=BACKGROUND_MAX))
    elif _pressed(conv, "e:phone", "改电话"):
        await ask_phone(conv)
    else:
        draft(conv).pop("editing")
        await summary(conv)


STEPS = {
    "title": title,
    "description": description,
    "extras": extras,
    "phone": phone,
    "confirm": confirm,
    "edit": edit,
}


# -- helpers --------------------------------------------------------------------------


async def _submit(conv: Conversation) -> None:
    d, room = draft(conv), await conv.room()
    if room is None:  # the room was removed while the person was typing
        conv.home()
        conv.reply(say("common", "choose_room_first"))
        return
    try:
        topic, _ = await conv.lifecycle.open_topic(
            conv.session,
            room=room,
            actor=await conv.actor(),
            source="public",
            title=d["title"],
            background=d["description"],
            contact_phone=d.get("phone"),
            location=d.get("location"),
        )
    except WorkflowError as refusal:
        conv.reply(refusal.message)
        return
    if d["attachments"]:
        await conv.session.exec(
            update(Attachment)
            .where(
                col(Attachment.id).in_(d["attachments"]),
                Attachment.uploaded_by_id == conv.person.id,
            )
            .values(topic_id=topic.id)
        )
    assert topic.review_due_at is not None
    conv.home()
    due = last_day(topic.review_due_at)
    conv.reply(
        say(
            "submit",
            "receipt",
            number=topic.number,
            room=room.name,
            due=f"{due.year}年{due.month}月{due.day}日",
        ),
        button("mine", "m:mine"),
    )


async def _attach(conv: Conversation, kind: str) -> None:
    media = conv.inbound.media
    assert media is not None
    row = Attachment(
        kind=kind,
        channel=conv.inbound.channel,
        source_ref=media.ref,
        content_type=media.content_type or "application/octet-stream",
        text=media.recognition or None,
        uploaded_by_id=conv.person.id,
        created_at=conv.now,
    )
    conv.session.add(row)
    await conv.session.flush()
    draft(conv)["attachments"] = [*draft(conv)["attachments"], row.id]


async def _back_to_summary(conv: Conversation) -> bool:
    if draft(conv).pop("editing", False):
        await summary(conv)
        return True
    return False


def _text(conv: Conversation, limit: int, needs_text: str) -> str | None:
    """The message's text if it is text within ``limit``; otherwise say why and None."""
    if conv.inbound.kind != "text" or not conv.inbound.text.strip():
        conv.reply(say("submit", needs_text))
        return None
    text = conv.inbound.text.strip()
    if len(text) > limit:
        conv.reply(say("common", "too_long", limit=limit, length=len(text)))
        return None
    return text


def _pressed(conv: Conversation, payload: str, *words: str) -> bool:
    inbound = conv.inbound
    if inbound.kind == "button":
        return inbound.payload == payload
    return inbound.kind == "text" and inbound.text.strip() in words
