"""Sending: a reply as Bot API messages, Bot API errors as the outbox's failures, and the
outbox's sender for the "telegram" channel (``telegram_outbound`` wires it for the services)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy import update
from sqlmodel import col, select
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from bot.config import Config
from bot.logs import pseudonym
from bot.pieces import split_text, utf16_units
from bot.telegram.client import CHANNEL, BotClient, TelegramMediaFetcher
from bot.telegram.limits import Limiter, Limits, LocalLimiter, Paused, RedisLimiter
from dialogs.types import Button, Reply
from notices.message import Files, OutboundMessage
from notices.outbox import DeliveryError, PermanentFailure, TemporaryFailure
from storage.db import SessionFactory, transaction
from storage.models import CardMessage, ChannelIdentity, OutboxMessage
from workflow.clock import Clock
from workflow.payloads import REVIEW
from workflow.texts import Catalogue

log = logging.getLogger("mashangyi.telegram")

#: The Bot API's limits: message text in UTF-16 code units, callback_data in bytes.
TEXT_LIMIT = 4096
#: A photo's or document's caption (UTF-16 code units; ours are short, in the catalogue).
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
#: Telegram's rule for one chat: "no more than one message per second" (bursts get 429).
#: The outbox keeps it when it drains a backlog; the limiter (bot/telegram/limits.py) keeps
#: it, and about 30 messages a second over all chats, for every process together, before
#: each call. A 429's retry_after pauses every send of the channel.
CHAT_INTERVAL = timedelta(seconds=1)

TEXTS = Catalogue(Path(__file__).parent.parent / "zh_CN.toml")


def delivery_failure(exc: TelegramError) -> DeliveryError:
    """A Bot API error as the outbox understands it. PTB rewrites error texts: match types."""
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RetryAfter):
        return TemporaryFailure(reason, retry_after=_retry_after(exc))
    if isinstance(exc, Forbidden | BadRequest | ChatMigrated):
        # Blocked by the user, chat not found, a message the API refuses: a retry cannot help.
        return PermanentFailure(reason)
    if isinstance(exc, InvalidToken):
        # Our configuration, not the recipient: worth retrying once the token is fixed.
        return TemporaryFailure(f"{reason} (check telegram.bot_token)")
    return TemporaryFailure(reason)  # NetworkError, TimedOut, 5xx, anything new


def _retry_after(exc: RetryAfter) -> timedelta:
    # An int (deprecated) or a timedelta (PTB_TIMEDELTA=1): accept both, without the warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


def keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    """One button per row (labels are Chinese phrases; two per row get cut off on phones)."""
    rows = []
    for button in buttons:
        if not 1 <= len(button.payload.encode()) <= CALLBACK_DATA_LIMIT:
            # The API would refuse the whole message; losing one button is the lesser harm.
            log.error("telegram: dropped button %r: payload is not 1-64 bytes", button.label)
            continue
        rows.append([InlineKeyboardButton(button.label, callback_data=button.payload)])
    return InlineKeyboardMarkup(rows) if rows else None


async def send_reply(
    bot: Bot,
    chat_id: int | str,
    reply: Reply,
    before: Callable[[], Awaitable[None]] | None = None,
    *,
    paid: bool = False,
) -> Message | None:
    """Send one reply; a long text goes as several messages, the buttons under the last
    (which is returned). ``before`` is awaited before each message (the limiter);
    ``paid``: as paid broadcast (``allow_paid_broadcast``)."""
    pieces = split_text(reply.text, TEXT_LIMIT, utf16_units)
    sent = None
    for number, piece in enumerate(pieces, 1):
        markup = keyboard(reply.buttons) if number == len(pieces) else None
        if before is not None:
            await before()
        if paid:
            sent = await bot.send_message(
                chat_id=chat_id, text=piece, reply_markup=markup, allow_paid_broadcast=True
            )
        else:
            sent = await bot.send_message(chat_id=chat_id, text=piece, reply_markup=markup)
    return sent


def shown(message: OutboundMessage) -> Reply:
    """A message as one reply: its text, with its page's link unless the text has it."""
    text, url = message.text, message.url
    if url and url not in text:
        text = f"{text}\n\n{TEXTS.text('telegram', 'details', url=url)}"
    return Reply(text, message.buttons)


class TelegramSender:
    """The outbox's sender for the "telegram" channel; ``address`` is the chat id.

    A message with ``edit_message_id`` edits that message (a review card that has been
    handled: the text says by whom, the keyboard goes). A review card that is sent is
    remembered (``CardMessage``) so it can be edited that way later.

    Every call waits for the ``limiter`` first (when given). A 429 pauses the limiter, so
    every process stops sending for ``retry_after``; a 403 (the person blocked the bot)
    marks the chat's identity unreachable, and later rows to that chat are dead at once
    without a call, until the person writes again (storage/dialog_state.py clears it).
    ``paid_broadcast``: pushes (kinds ``push.*``) go as paid broadcast, at its rate.
    A message with a ``file`` is that file, uploaded (multipart) from ``files``: an image
    with ``sendPhoto``, a document with ``sendDocument``, its text the caption.
    """

    #: The outbox's pace for one chat (notices/outbox.py).
    chat_interval = CHAT_INTERVAL

    def __init__(
        self,
        client: BotClient,
        sessions: SessionFactory | None = None,
        clock: Clock | None = None,
        *,
        limiter: Limiter | None = None,
        paid_broadcast: bool = False,
        files: Files | None = None,
    ) -> None:
        self.client, self.sessions, self.clock = client, sessions, clock
        self.files = files
        self.limiter = limiter
        self.paid_broadcast = paid_broadcast
        #: Chats this process found blocked: checked in the database before each send.
        self._blocked: set[str] = set()

    async def paused_for(self) -> float:
        """Seconds until this channel may send again (the dispatcher claims nothing before)."""
        return await self.limiter.paused_for() if self.limiter is not None else 0.0

    async def send(self, row: OutboxMessage, message: OutboundMessage) -> None:
        if row.address in self._blocked and await self._still_blocked(row.address):
            raise PermanentFailure("unreachable: the chat blocked the bot (403)")
        bot = self.client.get()
        paid = self.paid_broadcast and row.kind.startswith("push.")
        limiter = self.limiter

        async def before() -> None:
            if limiter is not None:
                await limiter.acquire(row.address, paid=paid)

        try:
            if message.edit_message_id is not None:
                await before()
                await self._edit(bot, row.address, message.text, message.edit_message_id)
                return
            if message.file is not None:
                await self._send_file(bot, row.address, message, before)
                return
            sent = await send_reply(bot, row.address, shown(message), before, paid=paid)
        except Paused as exc:
            raise TemporaryFailure(str(exc), retry_after=timedelta(seconds=exc.seconds)) from exc
        except TelegramError as exc:
            failure = delivery_failure(exc)
            if isinstance(exc, RetryAfter) and limiter is not None:
                seconds = _retry_after(exc).total_seconds()
                await limiter.pause(seconds)
                # The row waits as long as the limiter (a benchmark's time is scaled).
                waited = timedelta(seconds=limiter.limits.scaled(seconds))
                failure = TemporaryFailure(failure.reason, retry_after=waited)
            elif isinstance(exc, Forbidden):
                await self._mark_unreachable(row.address)
            raise failure from exc
        if sent is not None and row.topic_id is not None and is_card(message):
            await self._remember(row, sent)

    async def _send_file(
        self,
        bot: Bot,
        chat_id: str,
        message: OutboundMessage,
        before: Callable[[], Awaitable[None]],
    ) -> None:
        ref = message.file
        assert ref is not None
        if self.files is None:
            raise PermanentFailure(f"this process cannot read files ({ref.key})")
        upload = InputFile(await self.files.read(ref), filename=ref.filename)
        caption = message.text[:CAPTION_LIMIT] or None
        await before()
        if ref.kind == "image":
            await bot.send_photo(chat_id=chat_id, photo=upload, caption=caption)
        else:
            await bot.send_document(chat_id=chat_id, document=upload, caption=caption)

    async def _mark_unreachable(self, chat_id: str) -> None:
        self._blocked.add(chat_id)
        if self.sessions is None or self.clock is None:
            return
        try:
            async with transaction(self.sessions) as session:
                await session.exec(
                    update(ChannelIdentity)
                    .where(
                        col(ChannelIdentity.channel) == CHANNEL,
                        col(ChannelIdentity.external_id) == chat_id,
                        col(ChannelIdentity.unreachable_at).is_(None),
                    )
                    .values(unreachable_at=self.clock.now())
                )
        except Exception:  # the row goes dead anyway; the next 403 marks it again
            log.warning(
                "telegram: could not mark chat %s unreachable", pseudonym(chat_id), exc_info=True
            )

    async def _still_blocked(self, chat_id: str) -> bool:
        if self.sessions is None:
            return True
        async with self.sessions() as session:
            since = (
                await session.exec(
                    select(ChannelIdentity.unreachable_at).where(
                        ChannelIdentity.channel == CHANNEL, ChannelIdentity.external_id == chat_id
                    )
                )
            ).first()
        if since is None:  # wrote again since (or never known): try
            self._blocked.discard(chat_id)
            return False
        return True

    async def _edit(self, bot: Bot, chat_id: str, text: str, message_id: str) -> None:
        try:
            await bot.edit_message_text(chat_id=chat_id, text=text, message_id=int(message_id))
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():  # already says so: done
                raise

    async def _remember(self, row: OutboxMessage, sent: Message) -> None:
        if self.sessions is None or self.clock is None or row.topic_id is None:
            return
        try:
            async with transaction(self.sessions) as session:
                session.add(
                    CardMessage(
                        topic_id=row.topic_id,
                        channel=CHANNEL,
                        chat_id=row.address,
                        message_id=str(sent.message_id),
                        created_at=self.clock.now(),
                    )
                )
        except Exception:  # the card went out; only its later edit is lost
            log.warning("telegram: could not remember card %s", sent.message_id, exc_info=True)


def is_card(message: OutboundMessage) -> bool:
    """A review card: its buttons are review-button references."""
    return any(REVIEW.claims(button.payload) for button in message.buttons)


def telegram_outbound(
    config: Config,
    sessions: SessionFactory | None = None,
    clock: Clock | None = None,
    limiter: Limiter | None = None,
    files: Files | None = None,
) -> tuple[dict[str, TelegramSender], dict[str, TelegramMediaFetcher]]:
    """The sender and the media fetcher for ``build_services``; none without a bot token."""
    if not config.telegram.bot_token.get_secret_value():
        return {}, {}
    client = BotClient(config)
    fetcher = TelegramMediaFetcher(client, config.media.max_bytes)
    sender = TelegramSender(
        client,
        sessions,
        clock,
        limiter=limiter,
        paid_broadcast=config.telegram.allow_paid_broadcast,
        files=files,
    )
    return {CHANNEL: sender}, {CHANNEL: fetcher}


def build_limiter(config: Config, redis: Redis | None, clock: Clock) -> Limiter:
    """The sending limits of ``[telegram]``: shared through Redis when there is one; pauses
    on ``clock``, as the outbox's waits."""
    telegram = config.telegram
    limits = Limits(rate=telegram.messages_per_second, paid_rate=telegram.paid_messages_per_second)

    def pause_time() -> float:
        return clock.now().timestamp()

    if redis is not None:
        return RedisLimiter(redis, limits, pause_time=pause_time)
    return LocalLimiter(limits, pause_time=pause_time)


class Outbound(Protocol):
    """What ``close_outbound`` reads of the services (bot/services.py, which imports this
    module: hence a protocol, not the class)."""

    @property
    def senders(self) -> Mapping[str, object]: ...

    @property
    def fetchers(self) -> Mapping[str, object]: ...


async def close_outbound(services: Outbound) -> None:
    for user in (services.senders.get(CHANNEL), services.fetchers.get(CHANNEL)):
        client = getattr(user, "client", None)
        if isinstance(client, BotClient):
            await client.close()
