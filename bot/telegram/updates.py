"""Receiving: a Bot API ``Update`` (or the raw JSON PTB could not parse) as our ``Inbound``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from telegram import Message, Update
from telegram.constants import ChatType

from bot.edge import Refused
from bot.telegram.client import CHANNEL
from dialogs.types import Inbound, Location, Media

#: Deep-link payloads (t.me/<bot>?start=<payload>).
START_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The Bot API's ids have at most 52 significant bits; anything beyond is not Telegram's
#: (and would not fit the id columns).
ID_LIMIT = 2**52
#: Only what we serve; Telegram then does not even send the rest.
ALLOWED_UPDATES = ("message", "callback_query")
#: Image files sent "as a file" (uncompressed) are photos too; other documents are not.
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"}
#: Message contents we cannot take, in the order checked (an animation is also a document),
#: and the name the dialogs use for the polite refusal.
UNSUPPORTED = (
    ("animation", "animation"),
    ("video", "video"),
    ("video_note", "video"),
    ("sticker", "sticker"),
    ("document", "document"),
    ("contact", "contact"),
    ("poll", "poll"),
    ("dice", "other"),
    ("game", "other"),
    ("story", "other"),
    ("paid_media", "other"),
)


class NotNow(Exception):
    """An update refused for now (the flood limit): it must be delivered again later."""


@dataclass(frozen=True)
class Incoming:
    inbound: Inbound
    chat_id: int


def to_inbound(update: Update) -> Incoming | None:
    """The update as our Inbound, or None for what we do not serve (edits, groups,
    channels, membership changes, service messages). Ids out of the Bot API's range are
    ``Refused``."""
    message_id = str(update.update_id)
    query = update.callback_query
    if query is not None:
        chat = query.message.chat if query.message is not None else None
        if chat is None or chat.type != ChatType.PRIVATE or query.data is None:
            return None
        if query.from_user is None or query.from_user.is_bot:
            return None
        inbound = Inbound(
            CHANNEL,
            bot_api_id(query.from_user.id, "user"),
            "button",
            payload=query.data,
            message_id=message_id,
            display_name=query.from_user.full_name,
        )
        return Incoming(inbound, int(bot_api_id(chat.id, "chat")))
    message = update.message  # not edited_message / channel_post: those are ignored
    # PTB leaves a missing (required) chat as None rather than refusing the update.
    if message is None or message.chat is None or message.chat.type != ChatType.PRIVATE:
        return None
    user = message.from_user
    if user is None or user.is_bot:
        return None
    chat_id = int(bot_api_id(message.chat.id, "chat"))
    base = Inbound(
        CHANNEL,
        bot_api_id(user.id, "user"),
        "text",
        message_id=message_id,
        display_name=user.full_name,
    )
    content = _content(message, base)
    return Incoming(content, chat_id) if content is not None else None


def bot_api_id(value: object, what: str) -> str:
    """A user or chat id as we store it; ``Refused`` unless the Bot API could have sent it."""
    if type(value) is not int or not -ID_LIMIT < value < ID_LIMIT:
        shown = str(value) if type(value) is not int or value.bit_length() < 100 else "huge"
        raise Refused(f"{what} id out of the Bot API's range: {shown[:40]}")
    return str(value)


def _content(message: Message, base: Inbound) -> Inbound | None:
    def make(kind: str, **fields: Any) -> Inbound:
        return Inbound(
            base.channel,
            base.user_ref,
            kind,  # type: ignore[arg-type]
            message_id=base.message_id,
            display_name=base.display_name,
            **fields,
        )

    if message.text is not None:
        command, _, rest = message.text.partition(" ")
        if command == "/start" or command.startswith("/start@"):
            payload = rest.strip()
            # A payload not of the deep-link alphabet did not come from one of our links.
            return make("start", payload=payload if START_PAYLOAD.fullmatch(payload) else "")
        return make("text", text=message.text)
    caption = message.caption or ""
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        media = Media(largest.file_id, "image/jpeg", size=largest.file_size or 0)
        return make("image", text=caption, media=media)
    document = message.document
    if document and message.animation is None and document.mime_type in IMAGE_TYPES:
        media = Media(document.file_id, document.mime_type, size=document.file_size or 0)
        return make("image", text=caption, media=media)
    if document and message.animation is None:  # a file: the flows that take files take it
        file = Media(
            document.file_id,
            document.mime_type or "application/octet-stream",
            size=document.file_size or 0,
            name=(document.file_name or "")[:100],
        )
        return make("file", text=caption, media=file)
    if message.voice:
        voice = message.voice
        return make("voice", media=Media(voice.file_id, voice.mime_type or "audio/ogg"))
    if message.audio:
        audio = message.audio
        return make("voice", media=Media(audio.file_id, audio.mime_type or "audio/mpeg"))
    if message.location:
        venue = message.venue
        label = f"{venue.title} {venue.address}".strip() if venue else ""
        where = Location(message.location.latitude, message.location.longitude, label)
        return make("location", location=where)
    for attribute, what in UNSUPPORTED:
        if getattr(message, attribute, None):
            return make("unsupported", unsupported=what)
    return None


def fallback(data: dict[str, Any]) -> Incoming | None:
    """A private message PTB could not parse (the API added a required field PTB does
    not know yet, or the other way round): still answer the person politely."""
    message = data.get("message")
    if not isinstance(message, dict):
        return None
    chat, user = message.get("chat"), message.get("from")
    if not isinstance(chat, dict) or not isinstance(user, dict):
        return None
    if chat.get("type") != ChatType.PRIVATE or user.get("is_bot") is not False:
        return None
    inbound = Inbound(
        CHANNEL,
        bot_api_id(user.get("id"), "user"),
        "unsupported",
        message_id=str(data["update_id"]),
        unsupported="other",
    )
    return Incoming(inbound, int(bot_api_id(chat.get("id"), "chat")))
