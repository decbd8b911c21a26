"""WeChat messages as the dialogs see them, and replies as WeChat reads them.

``to_inbound``: a parsed WeChat message or event → one ``Inbound`` (or None for what we only
acknowledge). ``reply_text`` / ``render_text_reply``: the dialogs' replies → one passive
text reply (buttons as numbered lines), with user text made safe inside CDATA.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wechatpy.events import ScanEvent, SubscribeEvent, SubscribeScanEvent
from wechatpy.messages import (
    BaseMessage,
    ImageMessage,
    LocationMessage,
    TextMessage,
    VoiceMessage,
)
from wechatpy.replies import TextReply

from dialogs.types import Inbound, Location, Media, Reply
from workflow.texts import Catalogue

log = logging.getLogger("bot.wechat.webhook")

SAY = Catalogue(Path(__file__).parent.parent / "zh_CN.toml")

CHANNEL = "wechat"
VOICE_TYPES = {"amr": "audio/amr", "speex": "audio/speex", "mp3": "audio/mpeg"}
#: An openid is 28 characters (a UnionID 29); this leaves room for a format change and
#: stays well inside the identity column (128). Longer is not WeChat: refused with SUCCESS.
OPENID_MAX = 64


# -- translation -------------------------------------------------------------------------------


def to_inbound(message: BaseMessage) -> Inbound | None:
    """The dialogs' view of a WeChat message or event; None for events we only acknowledge
    and for senders WeChat cannot have (answered ``success``, so it is not sent again).
    Texts are made storable, and over-long ids shortened, by ``Inbound`` itself."""
    data: dict[str, Any] = message._data
    openid = message.source
    if not openid:
        raise ValueError("no FromUserName")
    if len(openid) > OPENID_MAX:
        log.warning("wechat: refused a FromUserName of %d characters", len(openid))
        return None
    msg_type = str(data.get("MsgType", "")).lower()
    if msg_type == "event":
        return _event(message, openid, data)
    # MsgId should always be there; without it, fall back to what identifies an event.
    message_id = str(message.id) if message.id else f"{openid}:{data.get('CreateTime', '')}"
    common: dict[str, Any] = {"channel": CHANNEL, "user_ref": openid, "message_id": message_id}
    if isinstance(message, TextMessage):
        text = message.content or ""
        menu_id = data.get("bizmsgmenuid")
        if menu_id:  # a tapped option of a msgmenu we sent
            return Inbound(kind="button", text=text, payload=str(menu_id), **common)
        return Inbound(kind="text", text=text, **common)
    if isinstance(message, ImageMessage):
        return Inbound(
            kind="image",
            media=Media(ref=_required(message.media_id), content_type="image/jpeg"),
            **common,
        )
    if isinstance(message, VoiceMessage):
        fmt = (message.format or "").lower()
        media = Media(
            ref=_required(message.media_id),
            content_type=VOICE_TYPES.get(fmt, f"audio/{fmt}" if fmt else ""),
            recognition=message.recognition or "",
        )
        return Inbound(kind="voice", media=media, **common)
    if isinstance(message, LocationMessage):
        where = Location(
            latitude=float(message.location_x),
            longitude=float(message.location_y),
            label=message.label or "",
        )
        return Inbound(kind="location", location=where, **common)
    # video, shortvideo, link, file, miniprogrampage…: told politely what we can take.
    return Inbound(kind="unsupported", unsupported=msg_type or "other", **common)


def _event(message: BaseMessage, openid: str, data: Mapping[str, Any]) -> Inbound | None:
    # Events carry no MsgId; WeChat's retries repeat FromUserName + CreateTime.
    message_id = f"{openid}:{data.get('CreateTime', '')}:{data.get('Event', '')}"
    if isinstance(message, SubscribeScanEvent | ScanEvent):
        payload = message.scene_id or ""  # wechatpy already stripped "qrscene_"
    elif isinstance(message, SubscribeEvent):
        payload = ""
    else:  # unsubscribe, menu clicks and views, template delivery reports…
        return None
    return Inbound(
        channel=CHANNEL, user_ref=openid, kind="start", payload=payload, message_id=message_id
    )


def _required(value: str | None) -> str:
    if not value:
        raise ValueError("no MediaId")
    return value


# -- rendering ---------------------------------------------------------------------------------


def reply_text(replies: Sequence[Reply]) -> str:
    """All replies as one text: a passive reply is a single message without buttons.

    Only the last reply's buttons become numbered lines, because a typed digit picks from
    the last buttons offered (see dialogs.router._numbered_choice).
    """
    last_with_buttons = max((i for i, r in enumerate(replies) if r.buttons), default=None)
    parts = []
    for index, reply in enumerate(replies):
        lines = [reply.text] if reply.text else []
        if index == last_with_buttons:
            lines.append(SAY.text("wechat", "choose_number"))
            lines += [
                SAY.text("wechat", "option", number=n, label=button.label)
                for n, button in enumerate(reply.buttons, start=1)
            ]
        if lines:
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def render_text_reply(message: BaseMessage, text: str, timestamp: int) -> str:
    return TextReply(
        source=cdata(message.target or ""),
        target=cdata(message.source or ""),
        content=cdata(text),
        time=timestamp,
    ).render()


def cdata(text: str) -> str:
    """Make ``text`` safe inside wechatpy's ``<![CDATA[…]]>`` (which it does not escape):
    a ``]]>`` would end the section and let the rest be read as XML elements."""
    return text.replace("]]>", "]]]]><![CDATA[>")
