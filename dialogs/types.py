"""What crosses the boundary between a channel adapter (bot/) and the dialogs.

An adapter turns a platform payload into one ``Inbound``, calls ``Dialogs.handle`` and
renders the returned ``Reply`` list in the platform's own way (WeChat: text with numbered
options; Telegram: inline keyboards; console: printed lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["text", "button", "start", "image", "voice", "location", "unsupported"]


@dataclass(frozen=True)
class Media:
    """A platform's reference to a photo or recording, downloaded later by bot/media."""

    ref: str  # WeChat MediaId, Telegram file_id
    content_type: str = ""  # e.g. "image/jpeg", "audio/amr" when the platform says
    recognition: str = ""  # WeChat speech recognition of a voice message, when present


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    label: str = ""


@dataclass(frozen=True)
class Inbound:
    channel: str  # "wechat" | "telegram" | "console"
    user_ref: str  # WeChat openid, Telegram user id, console name
    kind: Kind
    text: str = ""
    #: Button: the pressed button's payload. Start: the room scene ("r_<ROOMCODE>") or "".
    payload: str = ""
    media: Media | None = None
    location: Location | None = None
    #: Unique per message for deduplication (WeChat MsgId or FromUserName+CreateTime,
    #: Telegram update_id); empty means "do not deduplicate".
    message_id: str = ""
    display_name: str = ""
    #: For "unsupported": what it was (video, file, sticker, link…), for the polite answer.
    unsupported: str = ""


@dataclass(frozen=True)
class Button:
    label: str
    payload: str  # opaque, at most 64 bytes (Telegram callback_data)


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[Button, ...] = field(default_factory=tuple)


def room_payload(code: str) -> str:
    """The start payload / WeChat scene string naming a room (≤64 chars, [A-Za-z0-9_-])."""
    return f"r_{code}"


def room_from_payload(payload: str) -> str | None:
    return payload[2:] if payload.startswith("r_") and len(payload) > 2 else None


#: Start payloads / scene strings of role invites: "i_<secret>" (see workflow/invites.py).
INVITE_PREFIX = "i_"


def invite_payload(secret: str) -> str:
    return INVITE_PREFIX + secret


def invite_from_payload(payload: str) -> str | None:
    """The invite secret a start payload carries, or None if it is not an invite."""
    return payload[len(INVITE_PREFIX) :] if payload.startswith(INVITE_PREFIX) else None
