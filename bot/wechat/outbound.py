"""Outbound WeChat: the outbox sender (customer-service messages inside the 48-hour window,
template messages outside it) and the media fetcher, sharing one API client."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlmodel import select

from bot.config import Config
from bot.media import MediaFetcher
from bot.pieces import split_text, utf8_bytes
from bot.wechat.client import (
    OUT_OF_WINDOW,
    TEMPORARY,
    TEXT_BYTES,
    TOKEN_INVALID,
    WeChatAPI,
    WeChatAPIError,
    WeChatError,
    WeChatTokenError,
)
from notices.message import OutboundMessage
from notices.outbox import PermanentFailure, Sender, TemporaryFailure
from storage.db import SessionFactory
from storage.models import ChannelIdentity, OutboxMessage
from workflow.clock import Clock

log = logging.getLogger(__name__)

#: Template-message fields. WeChat's current templates take typed keywords only
#: (character_string ≤ 32 characters, thing ≤ 20); the keys must match the template chosen
#: in the admin console (e.g. a "议题进度提醒" with 编号 and 进度 fields).
TEMPLATE_NUMBER_KEY = "character_string1"
TEMPLATE_SUMMARY_KEY = "thing2"
TEMPLATE_THING_MAX = 20


class WeChatSender:
    """``notices.outbox.Sender`` for channel "wechat" (what it sends: ``OutboundMessage``).

    Inside the customer-service window (the person wrote within ``window``) the text goes as
    a customer-service message (a msgmenu when there are buttons); outside it, or when
    WeChat refuses it as out of window / too many, a template message with the topic
    number and the text's first line links to the reviewer's ``review_url`` if there is
    one, else to ``url``.
    """

    def __init__(
        self,
        api: WeChatAPI,
        sessions: SessionFactory,
        clock: Clock,
        *,
        template_id: str = "",
        window: timedelta = timedelta(hours=48),
    ) -> None:
        self.api = api
        self.sessions = sessions
        self.clock = clock
        self.template_id = template_id
        self.window = window

    async def send(self, row: OutboxMessage, message: OutboundMessage) -> None:
        try:
            if await self._in_window(row.address):
                try:
                    await self._customer_service(row.address, message)
                    return
                except WeChatAPIError as exc:
                    if exc.errcode not in OUT_OF_WINDOW:
                        raise
                    log.info("wechat: %s, falling back to a template message", exc)
            await self._template(row.address, message)
        except WeChatError as exc:
            raise delivery_failure(exc) from exc

    async def _in_window(self, openid: str) -> bool:
        async with self.sessions() as session:
            last = (
                await session.exec(
                    select(ChannelIdentity.last_inbound_at).where(
                        ChannelIdentity.channel == "wechat",
                        ChannelIdentity.external_id == openid,
                    )
                )
            ).first()
        return last is not None and self.clock.now() - last < self.window

    async def _customer_service(self, openid: str, message: OutboundMessage) -> None:
        """A long text goes as several messages, the buttons (a msgmenu) with the last.

        If a later piece fails, the retry sends the earlier ones again: the outbox delivers
        at least once, and a long text is rare (a card with a 2,000-character description,
        a long escalation list)."""
        *pieces, last = split_text(message.text, TEXT_BYTES, utf8_bytes)
        for piece in pieces:
            await self.api.send_text(openid, piece)
        if message.buttons:
            await self.api.send_menu(openid, last, [(b.payload, b.label) for b in message.buttons])
        else:
            await self.api.send_text(openid, last)

    async def _template(self, openid: str, message: OutboundMessage) -> None:
        if not self.template_id:
            raise PermanentFailure("outside the customer-service window and no template configured")
        data = {
            TEMPLATE_NUMBER_KEY: message.topic_number[:32],
            TEMPLATE_SUMMARY_KEY: _clip(_first_line(message.text), TEMPLATE_THING_MAX),
        }
        # A reviewer's card links to its review page (signed, single-use), not the public page.
        url = message.review_url or message.url
        await self.api.send_template(openid, self.template_id, data, url)


def delivery_failure(exc: WeChatError) -> TemporaryFailure | PermanentFailure:
    """How the outbox should treat a failed call: retry later, or give the message up."""
    if isinstance(exc, WeChatTokenError):
        return TemporaryFailure(f"no access token: {exc}")
    if isinstance(exc, WeChatAPIError):
        reason = f"errcode {exc.errcode}: {exc.errmsg}"
        if exc.errcode in TEMPORARY or exc.errcode in TOKEN_INVALID:
            return TemporaryFailure(reason)
        return PermanentFailure(reason)
    return TemporaryFailure(str(exc))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def wechat_outbound(
    config: Config, sessions: SessionFactory, clock: Clock
) -> tuple[dict[str, Sender], dict[str, MediaFetcher]]:
    """The "wechat" outbox sender and media fetcher (sharing one API client), or nothing
    when no account is configured."""
    wechat = config.wechat
    if not wechat.app_id:
        return {}, {}
    api = WeChatAPI.from_config(wechat, clock)
    sender = WeChatSender(
        api,
        sessions,
        clock,
        template_id=wechat.template_id,
        window=timedelta(hours=wechat.cs_window_hours),
    )
    return {"wechat": sender}, {"wechat": WeChatMediaFetcher(api, config.media.max_bytes)}


class WeChatMediaFetcher:
    """Downloads what a resident sent (MediaId) for bot/media's download loop."""

    def __init__(self, api: WeChatAPI, max_bytes: int) -> None:
        self.api = api
        self.max_bytes = max_bytes

    async def fetch(self, ref: str) -> tuple[bytes, str]:
        return await self.api.get_media(ref, self.max_bytes)
