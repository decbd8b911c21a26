"""What a step of 提议题 (dialogs/submit_topic.py) takes from a message: a text within a
limit, a contact number, a pressed button (or its word typed), a photo or voice message kept
as an attachment. Each says nothing or says why it took nothing; the steps decide what next."""

from __future__ import annotations

from dialogs.conversation import Conversation, say
from storage.models import Attachment
from workflow.payloads import Payload
from workflow.phones import contact_number


def text_within(
    conv: Conversation, limit: int, needs_text: str, section: str = "submit"
) -> str | None:
    """The message's text if it is text within ``limit``; otherwise say why and None."""
    if conv.inbound.kind != "text" or not conv.inbound.text.strip():
        conv.reply(say(section, needs_text))
        return None
    text = conv.inbound.text.strip()
    if len(text) > limit:
        conv.reply(say("common", "too_long", limit=limit, length=len(text)))
        return None
    return text


def contact(conv: Conversation) -> str | None:
    """A contact number (mobile or landline) typed as text, normalised; None if not one."""
    return contact_number(conv.inbound.text) if conv.inbound.kind == "text" else None


def pressed(conv: Conversation, payload: Payload, *words: str) -> bool:
    """Was ``payload``'s button pressed, or one of ``words`` typed?"""
    inbound = conv.inbound
    if inbound.kind == "button":
        return inbound.payload == payload
    return inbound.kind == "text" and inbound.text.strip() in words


async def attach(conv: Conversation, kind: str) -> int:
    """The message's media as an ``Attachment`` row of ``kind``; its id."""
    media = conv.inbound.media
    assert media is not None
    row = Attachment(
        kind=kind,
        channel=conv.inbound.channel,
        source_ref=media.ref,
        content_type=media.content_type or "application/octet-stream",
        text=media.recognition or media.name or None,
        uploaded_by_id=conv.person.id,
        created_at=conv.now,
    )
    conv.session.add(row)
    await conv.session.flush()
    assert row.id is not None
    return row.id
