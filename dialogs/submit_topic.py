"""提议题: title → description → optional photos/voice/location → optional phone →
summary (confirm / edit / cancel) → receipt with the topic number and the review date.

The same flow serves every source a person can use in the chat (``START_BUTTONS``; which
ones a person is offered: dialogs/sources.py): 委员荐题 (a member may invite other members to
co-sign before confirming: dialogs/cosigners.py, then dialogs/joint.py), 党政点题, and 网格推题
(a grid worker first names the resident, who becomes the submitter and whose phone replaces
the optional phone step). This module is the order of the steps and what each asks; what a
step takes from a message is dialogs/submit_fields.py's, and the draft becomes a topic in
dialogs/drafts.py.
"""

from __future__ import annotations

from typing import Any

from dialogs import cosigners, joint, similar_offer
from dialogs.conversation import Conversation, button, say
from dialogs.drafts import names_of, open_draft, receipt
from dialogs.handlers import Flow, Handlers, Step, on
from dialogs.sources import offered, refuse
from dialogs.submit_fields import attach, contact, pressed, text_within
from workflow.errors import WorkflowError
from workflow.lifecycle import BACKGROUND_MAX, TITLE_MAX, Source
from workflow.payloads import COSIGNER, Payload
from workflow.texts import label

NAME = "submit_topic"
MAX_ATTACHMENTS = 9
RESIDENT_NAME_MAX = 20

#: What starts this flow, as a pressed menu button or a typed word, and with which source.
START_BUTTONS: dict[Payload, Source] = {
    Payload.MENU_SUBMIT: Source.PUBLIC,
    Payload.MENU_MEMBER: Source.MEMBER,
    Payload.MENU_PARTY: Source.PARTY,
    Payload.MENU_GRID: Source.GRID,
}
START_WORDS: dict[str, Source] = {
    "提议题": Source.PUBLIC,
    "我要提议题": Source.PUBLIC,
    "委员荐题": Source.MEMBER,
    "党政点题": Source.PARTY,
    "网格推题": Source.GRID,
}


def starting(source: Source) -> Step:
    """The step that starts the flow with ``source``, once the person has a room."""

    async def start(conv: Conversation) -> None:
        if await conv.room() is None:
            conv.choose_room()
        else:
            await begin(conv, source)

    return start


async def begin(conv: Conversation, source: Source = Source.PUBLIC) -> None:
    room = await conv.room()
    assert room is not None
    if not offered(await conv.actor(), room, source):
        await refuse(conv, room, source)
        return
    conv.state.data = {
        "room": conv.data["room"],
        "draft": {"attachments": [], "source": str(source)},
    }
    if source == Source.GRID:
        await ask_resident_name(conv)
    else:
        await ask_title(conv)


def _source(conv: Conversation) -> Source:
    return Source(draft(conv).get("source", Source.PUBLIC))


async def ask_resident_name(conv: Conversation) -> None:
    conv.goto(NAME, "resident_name")
    conv.reply(say("sources", "ask_resident_name", limit=RESIDENT_NAME_MAX))


async def ask_resident_phone(conv: Conversation) -> None:
    conv.goto(NAME, "resident_phone")
    conv.reply(say("sources", "ask_resident_phone"))


async def ask_title(conv: Conversation) -> None:
    conv.goto(NAME, "title")
    conv.reply(say("submit", "ask_title", limit=TITLE_MAX))


def draft(conv: Conversation) -> dict[str, Any]:
    return conv.data["draft"]


async def on_message(conv: Conversation) -> None:
    await STEPS[conv.state.step](conv)


# -- steps ----------------------------------------------------------------------------


async def resident_name(conv: Conversation) -> None:
    text = text_within(conv, RESIDENT_NAME_MAX, "resident_name_needs_text", section="sources")
    if text is None:
        return
    draft(conv)["resident"] = {**draft(conv).get("resident", {}), "name": text}
    await ask_resident_phone(conv)


async def resident_phone(conv: Conversation) -> None:
    digits = contact(conv)
    if digits is None:
        conv.reply(say("sources", "bad_resident_phone"))
        return
    draft(conv)["resident"] = {**draft(conv).get("resident", {}), "phone": digits}
    if await _back_to_summary(conv):
        return
    await ask_title(conv)


async def title(conv: Conversation) -> None:
    text = text_within(conv, TITLE_MAX, "title_needs_text")
    if text is None:
        return
    draft(conv)["title"] = text
    if await _back_to_summary(conv):
        return
    room = await conv.room()
    if room is not None and room.id is not None:  # "是不是这件事？"
        await similar_offer.offer(conv, room.id, text)
    conv.goto(NAME, "description")
    conv.reply(say("submit", "ask_description", limit=BACKGROUND_MAX))


async def description(conv: Conversation) -> None:
    inbound = conv.inbound
    if inbound.kind == "voice" and inbound.media and inbound.media.recognition:
        await _attach(conv, "voice")
        text: str | None = inbound.media.recognition.strip()
    else:
        text = text_within(conv, BACKGROUND_MAX, "description_needs_text")
        if text is None:
            return
    draft(conv)["description"] = text
    if await _back_to_summary(conv):
        return
    conv.goto(NAME, "extras")
    conv.reply(
        say("submit", "ask_extras", limit=MAX_ATTACHMENTS), button("next", Payload.SUBMIT_NEXT)
    )


async def extras(conv: Conversation) -> None:
    inbound = conv.inbound
    if pressed(conv, Payload.SUBMIT_NEXT, "下一步"):
        if _source(conv) == Source.GRID:  # the resident's phone is already known
            await summary(conv)
        else:
            await ask_phone(conv)
    elif inbound.kind in ("image", "voice"):
        if len(draft(conv)["attachments"]) >= MAX_ATTACHMENTS:
            conv.reply(
                say("submit", "too_many_attachments", limit=MAX_ATTACHMENTS),
                button("next", Payload.SUBMIT_NEXT),
            )
            return
        await _attach(conv, "image" if inbound.kind == "image" else "voice")
        key = "photo_received" if inbound.kind == "image" else "voice_received"
        conv.reply(
            say("submit", key, count=len(draft(conv)["attachments"])),
            button("next", Payload.SUBMIT_NEXT),
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
            button("next", Payload.SUBMIT_NEXT),
        )
    else:
        conv.reply(
            say("submit", "ask_extras", limit=MAX_ATTACHMENTS), button("next", Payload.SUBMIT_NEXT)
        )


async def ask_phone(conv: Conversation) -> None:
    conv.goto(NAME, "phone")
    conv.reply(say("submit", "ask_phone"), button("skip", Payload.SUBMIT_SKIP))


async def phone(conv: Conversation) -> None:
    if pressed(conv, Payload.SUBMIT_SKIP, "跳过"):
        draft(conv)["phone"] = None
    else:
        digits = contact(conv)
        if digits is None:
            conv.reply(say("submit", "bad_phone"), button("skip", Payload.SUBMIT_SKIP))
            return
        draft(conv)["phone"] = digits
    await summary(conv)


async def summary(conv: Conversation) -> None:
    conv.goto(NAME, "confirm")
    d = draft(conv)
    room = await conv.room()
    none = say("submit", "none")
    location = d.get("location")
    source = _source(conv)
    more = ""
    if source != Source.PUBLIC:
        more += say("sources", "summary_source", source=label("sources", source))
    if source == Source.GRID:
        more += say("sources", "summary_resident", **d["resident"])
    if source == Source.MEMBER:
        names = await names_of(conv.session, d.get("cosigners", []))
        more += say("sources", "summary_cosigners", names="、".join(names) or none)
    cosign = [button("cosign", Payload.SUBMIT_COSIGN)] if source == Source.MEMBER else []
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
            phone=(d["resident"]["phone"] if source == Source.GRID else d.get("phone")) or none,
        )
        + more,
        button("confirm", Payload.SUBMIT_CONFIRM),
        button("edit", Payload.SUBMIT_EDIT),
        *cosign,
        button("cancel", Payload.SUBMIT_CANCEL),
    )


async def confirm(conv: Conversation) -> None:
    if pressed(conv, Payload.SUBMIT_CONFIRM, "确认", "确认提交"):
        await _submit(conv)
    elif pressed(conv, Payload.SUBMIT_EDIT, "修改"):
        conv.goto(NAME, "edit")
        resident = (
            [button("edit_resident", Payload.EDIT_RESIDENT)] if _source(conv) == Source.GRID else []
        )
        conv.reply(
            say("submit", "choose_edit"),
            button("edit_title", Payload.EDIT_TITLE),
            button("edit_description", Payload.EDIT_DESCRIPTION),
            *resident,
            button("edit_phone", Payload.EDIT_PHONE),
        )
    elif _source(conv) == Source.MEMBER and pressed(conv, Payload.SUBMIT_COSIGN, "邀请联名"):
        await ask_cosigners(conv)
    elif pressed(conv, Payload.SUBMIT_CANCEL):
        conv.home()
        conv.reply(say("common", "cancelled"))
    else:
        await summary(conv)


async def edit(conv: Conversation) -> None:
    draft(conv)["editing"] = True
    if pressed(conv, Payload.EDIT_TITLE, "改标题"):
        await ask_title(conv)
    elif pressed(conv, Payload.EDIT_DESCRIPTION, "改描述"):
        conv.goto(NAME, "description")
        conv.reply(say("submit", "ask_description", limit=BACKGROUND_MAX))
    elif _source(conv) == Source.GRID and pressed(conv, Payload.EDIT_RESIDENT, "改居民"):
        await ask_resident_name(conv)
    elif pressed(conv, Payload.EDIT_PHONE, "改电话"):
        await (ask_resident_phone if _source(conv) == Source.GRID else ask_phone)(conv)
    else:
        draft(conv).pop("editing")
        await summary(conv)


async def ask_cosigners(conv: Conversation) -> None:
    """委员荐题: the other members of the room, as buttons; pressing one adds or removes it."""
    if await cosigners.offer(conv, draft(conv).setdefault("cosigners", [])):
        conv.goto(NAME, "cosign")
    else:
        await summary(conv)


async def cosign(conv: Conversation) -> None:
    if await cosigners.toggle(conv, draft(conv).setdefault("cosigners", [])):
        await ask_cosigners(conv)
    else:  # 完成, or anything else: back to the summary
        await summary(conv)


STEPS = {
    "resident_name": resident_name,
    "resident_phone": resident_phone,
    "cosign": cosign,
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
    if d.get("cosigners"):  # a joint recommendation waits for every co-signer
        await joint.invite(conv, room, d)
        conv.home()
        return
    try:
        topic = await open_draft(
            conv.session,
            conv.lifecycle,
            room=room,
            actor=await conv.actor(),
            draft=d,
            uploader_id=conv.person.id,
        )
    except WorkflowError as refusal:
        conv.reply(refusal.message)
        return
    conv.home()
    conv.reply(receipt(topic, room), button("mine", Payload.MENU_MINE))


async def _attach(conv: Conversation, kind: str) -> None:
    draft(conv)["attachments"] = [*draft(conv)["attachments"], await attach(conv, kind)]


async def _back_to_summary(conv: Conversation) -> bool:
    if draft(conv).pop("editing", False):
        await summary(conv)
        return True
    return False


HANDLERS = Handlers(
    NAME,
    commands=[on(payload, starting(source)) for payload, source in START_BUTTONS.items()],
    words={word: starting(source) for word, source in START_WORDS.items()},
    flows={
        NAME: Flow(
            on_message,
            answers=(
                Payload.SUBMIT_NEXT,
                Payload.SUBMIT_SKIP,
                Payload.SUBMIT_CONFIRM,
                Payload.SUBMIT_EDIT,
                Payload.SUBMIT_COSIGN,
                Payload.SUBMIT_CANCEL,
                Payload.SUBMIT_DONE,
                Payload.EDIT_TITLE,
                Payload.EDIT_DESCRIPTION,
                Payload.EDIT_RESIDENT,
                Payload.EDIT_PHONE,
                COSIGNER,
            ),
        )
    },
)
