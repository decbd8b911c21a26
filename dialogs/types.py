"""What crosses the boundary between a channel adapter (bot/) and the dialogs.

An adapter turns a platform payload into one ``Inbound``, calls ``Dialogs.handle`` and
renders the returned ``Reply`` list in the platform's own way (WeChat: text with numbered
options; Telegram: inline keyboards; console: printed lines).

Every channel builds these, so they are where outside text is made storable: an
``Inbound`` (with its ``Media`` and ``Location``) never carries what the database would
refuse, or what would make each retry of the same message fail again.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from storage.models import Attachment, ChannelIdentity, InboundReceipt, Person
from workflow.payloads import START_INVITE, START_ROOM, Button

Kind = Literal["text", "button", "start", "image", "voice", "location", "unsupported"]

#: What PostgreSQL refuses in text and JSON: NUL, and surrogates that are not half of a
#: pair (JSON's "\ud800" gives Python a lone one; UTF-8 cannot encode it).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: The columns inbound values end up in (lengths read from the tables, so they cannot drift).
USER_REF_MAX = ChannelIdentity.__table__.c.external_id.type.length  # type: ignore[attr-defined]
DISPLAY_NAME_MAX = Person.__table__.c.display_name.type.length  # type: ignore[attr-defined]
MESSAGE_ID_MAX = InboundReceipt.__table__.c.key.type.length  # type: ignore[attr-defined]
MEDIA_REF_MAX = Attachment.__table__.c.source_ref.type.length  # type: ignore[attr-defined]
CONTENT_TYPE_MAX = Attachment.__table__.c.content_type.type.length  # type: ignore[attr-defined]


def storable(text: str) -> str:
    """``text`` without the code points PostgreSQL cannot store (see ``_UNSTORABLE``)."""
    return _UNSTORABLE.sub("", text) if _UNSTORABLE.search(text) else text


def _clean(value: object, *names: str) -> None:
    for name in names:
        text = getattr(value, name)
        clean = storable(text)
        if clean is not text:
            object.__setattr__(value, name, clean)  # frozen: only while being made


@dataclass(frozen=True)
class Media:
    """A platform's reference to a photo or recording, downloaded later by bot/media."""

    ref: str  # WeChat MediaId, Telegram file_id
    content_type: str = ""  # e.g. "image/jpeg", "audio/amr" when the platform says
    recognition: str = ""  # WeChat speech recognition of a voice message, when present
    size: int = 0  # bytes, when the platform says before downloading (Telegram); 0: unknown

    def __post_init__(self) -> None:
        _clean(self, "ref", "content_type", "recognition")
        if not self.ref or len(self.ref) > MEDIA_REF_MAX:
            raise ValueError(f"media reference of {len(self.ref)} characters")
        if len(self.content_type) > CONTENT_TYPE_MAX:
            object.__setattr__(self, "content_type", "")  # a cut type is no type: unknown


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    label: str = ""

    def __post_init__(self) -> None:
        _clean(self, "label")
        # NaN and infinities parse from JSON and XML alike; JSON columns refuse them.
        if not all(math.isfinite(v) for v in (self.latitude, self.longitude)) or not (
            abs(self.latitude) <= 90 and abs(self.longitude) <= 180
        ):
            raise ValueError(f"no place on earth: {self.latitude}, {self.longitude}")


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

    def __post_init__(self) -> None:
        _clean(
            self,
            "channel",
            "user_ref",
            "text",
            "payload",
            "message_id",
            "display_name",
            "unsupported",
        )
        if not self.user_ref or len(self.user_ref) > USER_REF_MAX:
            # Channels refuse such ids themselves (with the platform's answer); this is the
            # backstop for one that does not.
            raise ValueError(f"user_ref of {len(self.user_ref)} characters")
        if len(self.display_name) > DISPLAY_NAME_MAX:
            object.__setattr__(self, "display_name", self.display_name[:DISPLAY_NAME_MAX])
        if len(self.message_id) > MESSAGE_ID_MAX:
            # Still unique per message, and the same for a retry: deduplication keeps working.
            digest = hashlib.sha256(self.message_id.encode()).hexdigest()
            object.__setattr__(self, "message_id", f"sha256:{digest}")


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[Button, ...] = field(default_factory=tuple)


def room_payload(code: str) -> str:
    """The start payload / WeChat scene string naming a room (≤64 chars, [A-Za-z0-9_-])."""
    return START_ROOM.build(code)


def invite_payload(secret: str) -> str:
    """The start payload / scene string of a role invite (see workflow/invites.py)."""
    return START_INVITE.build(secret)


def reply_bodies(replies: Sequence[Reply]) -> list[dict[str, Any]]:
    """Replies as stored in a receipt (``text``, ``buttons``)."""
    return [{"text": r.text, "buttons": [[b.label, b.payload] for b in r.buttons]} for r in replies]
