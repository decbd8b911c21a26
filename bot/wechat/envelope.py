"""What crosses WeChat's edge: a request is verified (signature, fresh timestamp), read
(size cap), decrypted and parsed (no DOCTYPE) in our message mode, and a passive reply is
sealed the same way; nothing here knows the dialogs. The message modes:

- plain: plaintext bodies, signed by ``signature``; an encrypted body is refused.
- compatible: WeChat sends the plaintext elements *and* an ``<Encrypt>`` element; when the
  encrypted part is there it must be signed by ``msg_signature`` and is the only part read.
  A plaintext-only body is still accepted (so this mode is no safer than plain).
- safe: only ``encrypt_type=aes`` with a valid ``msg_signature`` over ``<Encrypt>``.
  ``signature`` alone does not cover the body, so a captured query could carry any
  plaintext; safe mode never reads plaintext elements.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.parsers.expat import ExpatError

from aiohttp import web
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage

from bot.config import WeChatSettings
from bot.wechat.xml_parse import parse_xml
from workflow.clock import Clock
from workflow.signatures import same_secret

#: WeChat's messages are a few kilobytes; anything much larger is not from WeChat.
MAX_BODY = 64 * 1024
#: A signed request older (or newer) than this is refused: a captured request cannot be
#: replayed later.
MAX_SKEW = timedelta(minutes=5)
#: Everything a malformed, hostile or mis-addressed body can raise on its way to an Inbound.
PARSE_ERRORS = (
    ValueError,  # a DOCTYPE (bot.wechat.xml_parse), bad base64/padding, bad UTF-8, bad numbers
    ExpatError,  # not XML
    KeyError,  # a required element (Encrypt, MsgType) missing
    TypeError,  # <xml> without children
    AttributeError,
    IndexError,
    struct.error,  # ciphertext that decrypts to fewer bytes than a length prefix
    InvalidAppIdException,  # encrypted for another account
)


class Forbidden(Exception):
    """Signature or timestamp check failed, or the body is not in our message mode."""


class TooLarge(Exception):
    """The body is over ``MAX_BODY``."""


class Envelope:
    """One account's message mode: checks and opens requests, seals replies."""

    def __init__(self, wechat: WeChatSettings, clock: Clock) -> None:
        self.clock = clock
        self.token: str = wechat.token.get_secret_value()
        self.mode: str = wechat.message_mode  # bot.config checked it against the key
        self.crypto = (
            WeChatCrypto(self.token, wechat.encoding_aes_key.get_secret_value(), wechat.app_id)
            if self.mode != "plain"
            else None
        )

    async def decode(self, request: web.Request) -> tuple[BaseMessage, bool]:
        """The message of a POST and whether it came encrypted, in our message mode.

        Raises Forbidden (not signed, or not in our mode), TooLarge, or one of PARSE_ERRORS.
        """
        query = request.query
        self.check(query)
        body = await read_capped(request, MAX_BODY)
        if body is None:
            raise TooLarge
        envelope = parse_xml(body)
        aes = query.get("encrypt_type") == "aes"
        # An <Encrypt> is the part we read, and must be signed, even without the flag.
        encrypted = aes or "Encrypt" in envelope
        if (self.mode == "plain" and encrypted) or (self.mode == "safe" and not aes):
            raise Forbidden  # not our mode; in safe mode nothing signs a plaintext body
        # wechatpy parses text only: it reads the same bytes again, with the same expat.
        if not encrypted:
            return parse_message(body), False
        inner = self.decrypt(envelope, query)
        parse_xml(inner)  # the decrypted XML may carry a DOCTYPE too
        return parse_message(inner), True

    def check(self, query: Mapping[str, str]) -> None:
        """``signature`` = sha1 of the sorted token, timestamp and nonce; timestamp fresh."""
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        if not same_secret(sign(self.token, timestamp, nonce), query.get("signature", "")):
            raise Forbidden
        try:
            sent = datetime.fromtimestamp(int(timestamp), UTC)
        except (ValueError, OverflowError, OSError):
            raise Forbidden from None
        if abs(self.clock.now() - sent) > MAX_SKEW:
            raise Forbidden

    def decrypt(self, envelope: Mapping[str, Any], query: Mapping[str, str]) -> str:
        """Check ``msg_signature`` (which also covers the ciphertext), decrypt."""
        assert self.crypto is not None  # bot.config: compatible and safe need the key
        encrypted = envelope["Encrypt"]
        if not isinstance(encrypted, str):
            raise ValueError("Encrypt is not text")
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        expected = sign(self.token, timestamp, nonce, encrypted)
        if not same_secret(expected, query.get("msg_signature", "")):
            raise Forbidden
        try:
            return self.crypto.decrypt_message(envelope, expected, timestamp, nonce)
        except InvalidSignatureException:  # pragma: no cover - checked just above
            raise Forbidden from None

    def seal(self, xml: str, query: Mapping[str, str], now: int) -> str:
        """A passive reply as WeChat expects it: encrypted when the request was."""
        assert self.crypto is not None
        return self.crypto.encrypt_message(xml, query.get("nonce", ""), str(now))


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
