"""Outbound WeChat: the outbox sender (customer-service messages inside the 48-hour window;
outside it a subscription notification the person consented to, else a template message,
else undeliverable) and the media fetcher, sharing one API client."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from bot.config import Config
from bot.media import MediaFetcher
from bot.pieces import split_text, utf8_bytes
from bot.wechat.client import (
    DAILY_QUOTA,
    NO_CONSENT,
    OUT_OF_WINDOW,
    TEMPORARY,
    TEXT_BYTES,
    TOKEN_INVALID,
    WeChatAPI,
    WeChatAPIError,
    WeChatError,
    WeChatTokenError,
)
from notices.message import Files, OutboundMessage
from notices.outbox import PermanentFailure, Sender, TemporaryFailure
from storage.db import SessionFactory, transaction
from storage.models import ChannelIdentity, OutboxMessage
from storage.participation import SubscriptionConsent
from workflow.clock import CHINA, Clock
from workflow.consents import usable

log = logging.getLogger(__name__)

#: Template-message fields. WeChat's current templates take typed keywords only
#: (character_string ≤ 32 characters, thing ≤ 20); the keys must match the template chosen
#: in the admin console (e.g. a "议题进度提醒" with 编号 and 进度 fields).
TEMPLATE_NUMBER_KEY = "character_string1"
TEMPLATE_SUMMARY_KEY = "thing2"
TEMPLATE_THING_MAX = 20
#: A subscription notification's fields, by the same rule (its template, chosen in the
#: admin console, must have these keys).
SUBSCRIBE_NUMBER_KEY = "character_string1"
SUBSCRIBE_SUMMARY_KEY = "thing2"


class WeChatSender:
    """``notices.outbox.Sender`` for channel "wechat" (what it sends: ``OutboundMessage``).

    Inside the customer-service window (the person wrote within ``window``) the text goes as
    a customer-service message (a msgmenu when there are buttons: a push's unfollow button
    too). Outside it, or when WeChat refuses it as out of window / too many (45015/45047):

    1. a subscription notification (``subscribe_template_id``) when the person has a
       consent for it: a one-time consent is taken (``used_at``) before the call, so two
       dispatchers cannot spend one consent twice, and given back if the call fails for
       another reason than the consent; 43101 (no consent after all) falls through;
    2. else a template message (``template_id``): the topic number and the text's first
       line (fields of at most 20 characters, no first/remark);
    3. else the message is dead: undeliverable, with the reason.

    Both link to the reviewer's ``review_url`` if there is one, else to a push's
    ``unfollow_url`` (its page shows the topic's link and the unfollow button: these
    messages cannot carry a button), else to ``url``. 45009 (an endpoint's daily quota
    used up) pauses that endpoint until the next day, China time: the row waits that long
    without counting an attempt, and later rows do not call it meanwhile.

    A message with an image ``file`` uploads it (``media/upload``, a temporary media) and
    sends it as a customer-service image message: only inside the window, since neither
    fallback carries an image (the message before it has the file's link). A document
    cannot go at all (notices/notify.py sends WeChat its link instead).
    """

    def __init__(
        self,
        api: WeChatAPI,
        sessions: SessionFactory,
        clock: Clock,
        *,
        template_id: str = "",
        window: timedelta = timedelta(hours=48),
        subscribe_template_id: str = "",
        subscribe_long_term: bool = False,
        files: Files | None = None,
    ) -> None:
        self.api = api
        self.files = files
        self.sessions = sessions
        self.clock = clock
        self.template_id = template_id
        self.window = window
        self.subscribe_template_id = subscribe_template_id
        self.subscribe_long_term = subscribe_long_term
        #: Endpoints whose daily quota is used up, until when.
        self._quota: dict[str, datetime] = {}

    async def send(self, row: OutboxMessage, message: OutboundMessage) -> None:
        try:
            if message.file is not None:
                await self._image(row.address, message)
                return
            if await self._in_window(row.address):
                try:
                    await self._customer_service(row.address, message)
                    return
                except WeChatAPIError as exc:
                    if exc.errcode not in OUT_OF_WINDOW:
                        raise
                    log.info("wechat: %s, falling back", exc)
            if self.subscribe_template_id and await self._subscription(row.address, message):
                return
            await self._template(row.address, message)
        except WeChatError as exc:
            raise delivery_failure(exc, self.clock.now()) from exc

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

    async def _image(self, openid: str, message: OutboundMessage) -> None:
        ref = message.file
        assert ref is not None
        if ref.kind != "image":
            raise PermanentFailure(f"undeliverable: WeChat messages carry no {ref.kind}")
        if self.files is None:
            raise PermanentFailure(f"this process cannot read files ({ref.key})")
        if not await self._in_window(openid):
            raise PermanentFailure(
                "undeliverable: an image goes only inside the customer-service window"
            )
        data = await self.files.read(ref)
        # The store key's name, not ``ref.filename``: aiohttp percent-encodes a Chinese
        # filename, and an image message shows no name anyway.
        name = ref.key.rsplit("/", 1)[-1]
        media_id = await self.api.upload_media("image", name, data, _image_type(name))
        try:
            await self.api.send_image(openid, media_id)
        except WeChatAPIError as exc:
            if exc.errcode in OUT_OF_WINDOW:
                raise PermanentFailure(
                    f"undeliverable: an image goes only inside the customer-service window "
                    f"(errcode {exc.errcode})"
                ) from exc
            raise

    async def _subscription(self, openid: str, message: OutboundMessage) -> bool:
        """Sent as a subscription notification; False when the person has no consent."""
        self._check_quota("subscribe")
        consent = await self._take_consent(openid)
        if consent is None:
            return False
        data = {
            SUBSCRIBE_NUMBER_KEY: message.topic_number[:32],
            SUBSCRIBE_SUMMARY_KEY: _clip(_first_line(message.text), TEMPLATE_THING_MAX),
        }
        try:
            await self.api.send_subscribe(openid, self.subscribe_template_id, data, _link(message))
        except WeChatAPIError as exc:
            if exc.errcode == NO_CONSENT:  # WeChat knows better: the consent is no more
                log.info("wechat: consent %s refused (%s), falling back", consent.id, exc)
                await self._end_consent(consent)
                return False
            await self._give_back(consent)
            if exc.errcode == DAILY_QUOTA:
                self._pause("subscribe")
            raise
        except WeChatError:
            await self._give_back(consent)
            raise
        return True

    async def _take_consent(self, openid: str) -> SubscriptionConsent | None:
        """The oldest consent that may carry a message; a one-time one is marked used in
        the same transaction (conditionally: of two dispatchers, one gets it)."""
        now = self.clock.now()
        condition = usable(openid, self.subscribe_template_id, long_term=self.subscribe_long_term)
        async with transaction(self.sessions) as session:
            for consent in await session.exec(
                select(SubscriptionConsent)
                .where(condition)
                .order_by(col(SubscriptionConsent.id))
                .limit(5)
            ):
                if consent.long_term and self.subscribe_long_term:
                    return consent
                taken = await session.exec(
                    update(SubscriptionConsent)
                    .where(
                        col(SubscriptionConsent.id) == consent.id,
                        col(SubscriptionConsent.used_at).is_(None),
                    )
                    .values(used_at=now)
                    .returning(col(SubscriptionConsent.id))
                )
                if taken.first() is not None:
                    consent.used_at = now
                    return consent
        return None

    async def _give_back(self, consent: SubscriptionConsent) -> None:
        if consent.long_term and self.subscribe_long_term:
            return
        async with transaction(self.sessions) as session:
            await session.exec(
                update(SubscriptionConsent)
                .where(col(SubscriptionConsent.id) == consent.id)
                .values(used_at=None)
            )

    async def _end_consent(self, consent: SubscriptionConsent) -> None:
        async with transaction(self.sessions) as session:
            await session.exec(
                update(SubscriptionConsent)
                .where(col(SubscriptionConsent.id) == consent.id)
                .values(revoked_at=self.clock.now())
            )

    async def _template(self, openid: str, message: OutboundMessage) -> None:
        if not self.template_id:
            raise PermanentFailure(
                "undeliverable: outside the customer-service window, no subscription consent "
                "and no template configured"
            )
        self._check_quota("template")
        data = {
            TEMPLATE_NUMBER_KEY: message.topic_number[:32],
            TEMPLATE_SUMMARY_KEY: _clip(_first_line(message.text), TEMPLATE_THING_MAX),
        }
        try:
            await self.api.send_template(openid, self.template_id, data, _link(message))
        except WeChatAPIError as exc:
            if exc.errcode == DAILY_QUOTA:
                self._pause("template")
            raise

    def _pause(self, endpoint: str) -> None:
        self._quota[endpoint] = next_day(self.clock.now())

    def _check_quota(self, endpoint: str) -> None:
        until = self._quota.get(endpoint)
        now = self.clock.now()
        if until is not None and now < until:
            raise TemporaryFailure(
                f"{endpoint} messages: daily quota used up (45009)", retry_after=until - now
            )


def _link(message: OutboundMessage) -> str:
    # A reviewer's card links to its review page (signed, single-use), not the public page;
    # a push to its unfollow page (which links to the topic's).
    return message.review_url or message.unfollow_url or message.url


def _image_type(name: str) -> str:
    return "image/jpeg" if name.lower().endswith((".jpg", ".jpeg")) else "image/png"


def next_day(now: datetime) -> datetime:
    """Shortly after the next midnight, China time: when WeChat's daily quotas reset."""
    local = now.astimezone(CHINA)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), CHINA)
    return midnight + timedelta(minutes=5)


def delivery_failure(
    exc: WeChatError, now: datetime | None = None
) -> TemporaryFailure | PermanentFailure:
    """How the outbox should treat a failed call: retry later, or give the message up."""
    if isinstance(exc, WeChatTokenError):
        return TemporaryFailure(f"no access token: {exc}")
    if isinstance(exc, WeChatAPIError):
        reason = f"errcode {exc.errcode}: {exc.errmsg}"
        if exc.errcode == DAILY_QUOTA and now is not None:
            # Not an attempt against the message: it waits for the quota's next day.
            return TemporaryFailure(f"{reason} (daily quota)", retry_after=next_day(now) - now)
        if exc.errcode in TEMPORARY or exc.errcode in TOKEN_INVALID:
            return TemporaryFailure(reason)
        return PermanentFailure(reason)
    return TemporaryFailure(str(exc))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def wechat_outbound(
    config: Config, sessions: SessionFactory, clock: Clock, files: Files | None = None
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
        subscribe_template_id=wechat.subscribe_template_id,
        subscribe_long_term=wechat.subscribe_long_term,
        files=files,
    )
    return {"wechat": sender}, {"wechat": WeChatMediaFetcher(api, config.media.max_bytes)}


class WeChatMediaFetcher:
    """Downloads what a resident sent (MediaId) for bot/media's download loop."""

    def __init__(self, api: WeChatAPI, max_bytes: int) -> None:
        self.api = api
        self.max_bytes = max_bytes

    async def fetch(self, ref: str) -> tuple[bytes, str]:
        return await self.api.get_media(ref, self.max_bytes)
