"""提议题: title → description → optional photos/voice/location → optional phone →
summary (confirm / edit / cancel) → receipt with the topic number and the review date.

The same flow serves every source a person can use in the chat (``START_BUTTONS``): 委员荐题 (a
member may invite other members to co-sign before confirming, see dialogs/joint.py),
党政点题, and 网格推题 (a grid worker first names the resident, who becomes the submitter
and whose phone replaces the optional phone step).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from dialogs import joint
from dialogs.conversation import Conversation, button, say
from dialogs.drafts import names_of, open_draft, receipt
from dialogs.handlers import Flow, Handlers, Step, on
from dialogs.types import Button
from storage.models import Attachment, ChannelIdentity, Person, RoleGrant, Room
from workflow.errors import WorkflowError
from workflow.lifecycle import BACKGROUND_MAX, SOURCE_ROLES, TITLE_MAX, Role, Source
from workflow.payloads import COSIGNER, Payload
from workflow.people import in_force
from workflow.permissions import Actor, source_role
from workflow.phones import contact_number
from workflow.texts import label

NAME = "submit_topic"
MAX_ATTACHMENTS = 9
RESIDENT_NAME_MAX = 20
MAX_COSIGNERS = 10

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
#: The menu button of each source that needs a role (labels in zh_CN.toml [buttons]).
SOURCE_BUTTONS = {
    Source.MEMBER: Payload.MENU_MEMBER,
    Source.PARTY: Payload.MENU_PARTY,
    Source.GRID: Payload.MENU_GRID,
}


def starting(source: Source) -> Step:
    """The step that starts the flow with ``source``, once the person has a room."""

    async def start(conv: Conversation) -> None:
        if await conv.room() is None:
            conv.choose_room()
        else:
            await begin(conv, source)

    return start


def offered(actor: Actor, room: Room, source: Source) -> bool:
    """May ``actor`` use ``source`` in ``room`` from the chat? (Only a role held in that very
    room counts; the lifecycle checks again when the topic is opened.)"""
    assert room.id is not None
    return source_role(actor, source, [room.id], admin=False) is not None


def source_buttons(actor: Actor, room: Room) -> list[Button]:
    """The menu buttons of the sources ``actor`` may use in ``room``."""
    return [
        button(source.value, payload)
        for source, payload in SOURCE_BUTTONS.items()
        if offered(actor, room, source)
    ]


async def begin(conv: Conversation, source: Source = Source.PUBLIC) -> None:
    room = await conv.room()
    assert room is not None
    if not offered(await conv.actor(), room, source):
        allowed = SOURCE_ROLES[source] or frozenset()
        await conv.refuse(
            "source.refused",
            say(
                "sources",
                "not_permitted",
                source=label("sources", source),
                room=room.name,
                roles="、".join(label("roles", r) for r in sorted(allowed)),
            ),
            button("submit", Payload.MENU_SUBMIT),
            source=str(source),
            room=room.code,
        )
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
    text = _text(conv, RESIDENT_NAME_MAX, "resident_name_needs_text", section="sources")
    if text is None:
        return
    draft(conv)["resident"] = {**draft(conv).get("resident", {}), "name": text}
    await ask_resident_phone(conv)


async def resident_phone(conv: Conversation) -> None:
    digits = _phone(conv)
    if digits is None:
        conv.reply(say("sources", "bad_resident_phone"))
        return
    draft(conv)["resident"] = {**draft(conv).get("resident", {}), "phone": digits}
    if await _back_to_summary(conv):
        return
    await ask_title(conv)


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
        text: str | None = inbound.media.recognition.strip()
    else:
        text = _text(conv, BACKGROUND_MAX, "description_needs_text")
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
    if _pressed(conv, Payload.SUBMIT_NEXT, "下一步"):
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
    if _pressed(conv, Payload.SUBMIT_SKIP, "跳过"):
        draft(conv)["phone"] = None
    else:
        digits = _phone(conv)
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
    if _pressed(conv, Payload.SUBMIT_CONFIRM, "确认", "确认提交"):
        await _submit(conv)
    elif _pressed(conv, Payload.SUBMIT_EDIT, "修改"):
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
    elif _source(conv) == Source.MEMBER and _pressed(conv, Payload.SUBMIT_COSIGN, "邀请联名"):
        await ask_cosigners(conv)
    elif _pressed(conv, Payload.SUBMIT_CANCEL):
        conv.home()
        conv.reply(say("common", "cancelled"))
    else:
        await summary(conv)


async def edit(conv: Conversation) -> None:
    draft(conv)["editing"] = True
    if _pressed(conv, Payload.EDIT_TITLE, "改标题"):
        await ask_title(conv)
    elif _pressed(conv, Payload.EDIT_DESCRIPTION, "改描述"):
        conv.goto(NAME, "description")
        conv.reply(say("submit", "ask_description", limit=BACKGROUND_MAX))
    elif _source(conv) == Source.GRID and _pressed(conv, Payload.EDIT_RESIDENT, "改居民"):
        await ask_resident_name(conv)
    elif _pressed(conv, Payload.EDIT_PHONE, "改电话"):
        await (ask_resident_phone if _source(conv) == Source.GRID else ask_phone)(conv)
    else:
        draft(conv).pop("editing")
        await summary(conv)


async def ask_cosigners(conv: Conversation) -> None:
    """委员荐题: the other members of the room, as buttons; pressing one adds or removes it."""
    chosen = draft(conv).setdefault("cosigners", [])
    candidates = await _candidates(conv)
    if not candidates:
        conv.reply(say("sources", "no_cosigners"))
        await summary(conv)
        return
    conv.goto(NAME, "cosign")
    conv.reply(
        say("sources", "ask_cosigners", limit=MAX_COSIGNERS),
        *[
            Button(("✓ " if pid in chosen else "") + name, COSIGNER.build(pid))
            for pid, name in candidates.items()
        ],
        button("done", Payload.SUBMIT_DONE),
    )


async def cosign(conv: Conversation) -> None:
    inbound, chosen = conv.inbound, draft(conv).setdefault("cosigners", [])
    payload = inbound.payload if inbound.kind == "button" else ""
    if COSIGNER.claims(payload):
        candidates = await _candidates(conv)
        pid = COSIGNER.parse(payload)
        if pid not in candidates:  # a forged or outdated choice
            conv.reply(say("sources", "not_a_cosigner"))
        elif pid in chosen:
            chosen.remove(pid)
        elif len(chosen) >= MAX_COSIGNERS:
            conv.reply(say("sources", "too_many_cosigners", limit=MAX_COSIGNERS))
        else:
            chosen.append(pid)
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


async def _candidates(conv: Conversation) -> dict[int, str]:
    """Members of the room who may co-sign: not the person, reachable in a chat."""
    room = await conv.room()
    assert room is not None
    rows = await conv.session.exec(
        select(Person.id, Person.display_name)
        .join(RoleGrant, col(RoleGrant.person_id) == Person.id)
        .where(
            RoleGrant.room_id == room.id,
            RoleGrant.role == Role.MEMBER,
            in_force(),
            Person.id != conv.person.id,
            col(Person.id).in_(select(ChannelIdentity.person_id)),
        )
        .order_by(col(Person.id))
        .distinct()
    )
    return {pid: name or f"#{pid}" for pid, name in rows if pid is not None}


def _phone(conv: Conversation) -> str | None:
    """A contact number (mobile or landline) typed as text, normalised; None if not one."""
    return contact_number(conv.inbound.text) if conv.inbound.kind == "text" else None


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


def _text(conv: Conversation, limit: int, needs_text: str, section: str = "submit") -> str | None:
    """The message's text if it is text within ``limit``; otherwise say why and None."""
    if conv.inbound.kind != "text" or not conv.inbound.text.strip():
        conv.reply(say(section, needs_text))
        return None
    text = conv.inbound.text.strip()
    if len(text) > limit:
        conv.reply(say("common", "too_long", limit=limit, length=len(text)))
        return None
    return text


def _pressed(conv: Conversation, payload: Payload, *words: str) -> bool:
    inbound = conv.inbound
    if inbound.kind == "button":
        return inbound.payload == payload
    return inbound.kind == "text" and inbound.text.strip() in words


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
