"""The WeChat official-account webhook, ``/wechat``.

GET: URL verification (echo ``echostr`` back). POST: a message or event, in plaintext or in
safe mode (``encrypt_type=aes``). Each request: verify (signature, fresh timestamp) → read
(size cap) → decrypt → parse → ``Inbound`` → ``Dialogs.handle`` → one passive text reply.

WeChat waits 5 seconds for the reply and retries the same message up to twice; the dialogs
deduplicate by ``message_id`` and hand a retry the same replies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.parsers.expat import ExpatError

import xmltodict
from aiohttp import web
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import ScanEvent, SubscribeEvent, SubscribeScanEvent
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import (
    BaseMessage,
    ImageMessage,
    LocationMessage,
    TextMessage,
    VoiceMessage,
)
from wechatpy.replies import TextReply

from bot.pieces import split_text, utf8_bytes
from bot.wechat_api import TEXT_BYTES, WeChatAPI
from dialogs.types import Inbound, Location, Media, Reply
from notices.outbox import enqueue
from storage.db import transaction
from workflow.texts import Catalogue

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

SAY = Catalogue(Path(__file__).with_name("zh_CN.toml"))

CHANNEL = "wechat"
#: WeChat's messages are a few kilobytes; anything much larger is not from WeChat.
MAX_BODY = 64 * 1024
#: A signed request older (or newer) than this is refused: a captured request cannot be
#: replayed later.
MAX_SKEW = timedelta(minutes=5)
#: Everything a malformed, hostile or mis-addressed body can raise on its way to an Inbound.
PARSE_ERRORS = (
    ValueError,  # entities refused by xmltodict, bad base64/padding, bad UTF-8, bad numbers
    ExpatError,  # not XML
    KeyError,  # a required element (Encrypt, MsgType) missing
    TypeError,  # <xml> without children
    AttributeError,
    IndexError,
    struct.error,  # ciphertext that decrypts to fewer bytes than a length prefix
    InvalidAppIdException,  # encrypted for another account
)
VOICE_TYPES = {"amr": "audio/amr", "speex": "audio/speex", "mp3": "audio/mpeg"}
#: The running webhook, for tests and operators that tune it.
WEBHOOK: web.AppKey[WeChatWebhook] = web.AppKey("wechat_webhook")
#: Seconds we wait for the dialogs before answering; WeChat gives up at 5.
REPLY_DEADLINE = 4.0
#: Answering this (or an empty body) tells WeChat "received, nothing to say".
SUCCESS = "success"
#: An openid is 28 characters (a UnionID 29); this leaves room for a format change and
#: stays well inside the identity column (128). Longer is not WeChat: refused with SUCCESS.
OPENID_MAX = 64


class Forbidden(Exception):
    """Signature or timestamp check failed."""


def setup(app: web.Application, services: Services) -> None:
    """Add ``/wechat`` when a callback token is configured; close the API client on exit."""
    if services.config["wechat"]["token"]:
        hook = WeChatWebhook(services)
        app[WEBHOOK] = hook
        app.router.add_get("/wechat", hook.verify_url)
        app.router.add_post("/wechat", hook.receive)
    # The sender and the media fetcher share one API client (one HTTP session).
    outbound = [*services.senders.values(), *services.fetchers.values()]
    apis = {id(o.api): o.api for o in outbound if isinstance(getattr(o, "api", None), WeChatAPI)}
    if apis:

        async def close(_app: web.Application) -> None:
            for api in apis.values():
                await api.close()

        app.on_cleanup.append(close)


class WeChatWebhook:
    def __init__(self, services: Services) -> None:
        wechat = services.config["wechat"]
        self.services = services
        self.reply_deadline = REPLY_DEADLINE
        self._late: set[asyncio.Future[None]] = set()
        self.token: str = wechat["token"]
        self.crypto = (
            WeChatCrypto(self.token, wechat["encoding_aes_key"], wechat["app_id"])
            if wechat["encoding_aes_key"]
            else None
        )

    async def verify_url(self, request: web.Request) -> web.Response:
        """The admin console's "submit URL" check: echo ``echostr`` when signed by us."""
        try:
            self.check(request.query)
        except Forbidden:
            return web.Response(status=403, text="forbidden")
        echostr = request.query.get("echostr")
        if not echostr:
            return web.Response(status=400, text="no echostr")
        return web.Response(text=echostr)

    async def receive(self, request: web.Request) -> web.Response:
        try:
            self.check(request.query)
            body = await read_capped(request, MAX_BODY)
            if body is None:
                return web.Response(status=413, text="too large")
            safe = request.query.get("encrypt_type") == "aes"
            message = parse_message(self.decrypt(body, request.query) if safe else body)
            if message is None:
                raise ValueError("empty body")
            inbound = to_inbound(message)
        except Forbidden:
            return web.Response(status=403, text="forbidden")
        except PARSE_ERRORS as exc:
            log.info("wechat: refused a body: %s: %s", type(exc).__name__, exc)
            return web.Response(status=400, text="bad request")
        if inbound is None:  # an event we do not act on
            return web.Response(text=SUCCESS)
        replies = await self.handle_in_time(inbound)
        text, *overflow = split_text(reply_text(replies), TEXT_BYTES, utf8_bytes)
        if overflow:  # a passive reply is one message: the rest follows through the outbox
            await self._send_later(inbound, "overflow", [{"text": piece} for piece in overflow])
        return self.respond(message, text, request.query, safe)

    async def handle_in_time(self, inbound: Inbound) -> Sequence[Reply]:
        """The dialogs' replies, or none if they take longer than ``reply_deadline``.

        WeChat stops waiting after 5 seconds. A slow step (a busy database) is not
        cancelled: it finishes in the background and its replies go out through the outbox
        as customer-service messages (the person has just written, so the window is open).
        """
        task = asyncio.ensure_future(self.services.dialogs.handle(inbound))
        done, _ = await asyncio.wait({task}, timeout=self.reply_deadline)
        if task in done:
            return task.result()
        late = asyncio.ensure_future(self._send_late(inbound, task))
        self._late.add(late)  # keep a reference until it is done
        late.add_done_callback(self._late.discard)
        return []

    async def _send_late(self, inbound: Inbound, task: asyncio.Future[list[Reply]]) -> None:
        try:
            replies = await task
        except Exception:
            log.exception("wechat: a late dialog step failed")
            return
        bodies = [
            {"text": reply.text, "buttons": [[b.label, b.payload] for b in reply.buttons]}
            for reply in replies
        ]
        await self._send_later(inbound, "late", bodies)

    async def _send_later(self, inbound: Inbound, tag: str, bodies: list[dict[str, Any]]) -> None:
        """Replies as customer-service messages, through the outbox, in order (the person
        has just written, so their window is open). A retried message has the same keys."""
        async with transaction(self.services.sessions) as session:
            for number, body in enumerate(bodies):
                await enqueue(
                    session,
                    key=f"wechat:{tag}:{inbound.message_id or id(bodies)}:{number}",
                    channel=CHANNEL,
                    address=inbound.user_ref,
                    kind="dialog.reply",
                    body=body,
                    now=self.services.clock.now(),
                )

    # -- steps ---------------------------------------------------------------------------

    def check(self, query: Mapping[str, str]) -> None:
        """``signature`` = sha1 of the sorted token, timestamp and nonce; timestamp fresh."""
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        if not _digest_equal(sign(self.token, timestamp, nonce), query.get("signature", "")):
            raise Forbidden
        try:
            sent = datetime.fromtimestamp(int(timestamp), UTC)
        except (ValueError, OverflowError, OSError):
            raise Forbidden from None
        if abs(self.services.clock.now() - sent) > MAX_SKEW:
            raise Forbidden

    def decrypt(self, body: bytes, query: Mapping[str, str]) -> str:
        """Safe mode: check ``msg_signature`` (which also covers the ciphertext), decrypt."""
        if self.crypto is None:
            raise Forbidden  # encrypted traffic while we have no key: not for us
        envelope = xmltodict.parse(body)["xml"]  # entities refused here too
        encrypted = envelope["Encrypt"]
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        expected = sign(self.token, timestamp, nonce, encrypted)
        if not _digest_equal(expected, query.get("msg_signature", "")):
            raise Forbidden
        try:
            return self.crypto.decrypt_message(envelope, expected, timestamp, nonce)
        except InvalidSignatureException:  # pragma: no cover - checked just above
            raise Forbidden from None

    def respond(
        self, message: BaseMessage, text: str, query: Mapping[str, str], safe: bool
    ) -> web.Response:
        if not text:
            return web.Response(text=SUCCESS)
        now = int(self.services.clock.now().timestamp())
        xml = render_text_reply(message, text, now)
        if safe:
            assert self.crypto is not None
            xml = self.crypto.encrypt_message(xml, query.get("nonce", ""), str(now))
        return web.Response(text=xml, content_type="application/xml")


async def read_capped(request: web.Request, cap: int) -> bytes | None:
    """The body, or None when it is larger than ``cap`` (never reads more than cap+1)."""
    if request.content_length is not None and request.content_length > cap:
        return None
    chunks, size = [], 0
    while size <= cap:
        chunk = await request.content.read(cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return None if size > cap else b"".join(chunks)


def sign(token: str, *parts: str) -> str:
    return hashlib.sha1("".join(sorted((token, *parts))).encode()).hexdigest()


def _digest_equal(expected: str, given: str) -> bool:
    # Bytes: compare_digest refuses str with non-ASCII characters (a forged query may have).
    return hmac.compare_digest(expected.encode(), given.encode())


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
