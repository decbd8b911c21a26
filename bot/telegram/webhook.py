"""The webhook: ``POST /telegram`` → secret check → ``Update`` → one ``Inbound`` →
``Dialogs.handle`` → the replies written to the outbox in the dialog's own transaction and the
update answered; they are sent right after in the background (bot/telegram/replies.py), each
chat's turns one after another, so a slow Bot API does not hold the webhook. Dialog state
lives in our database, so PTB is used only as a typed Bot API client: no ConversationHandler,
no update queue, no job queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Bot, CallbackQuery, Message, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application

from bot.config import ConfigError
from bot.edge import MAX_DEPTH, Refused, body_key, record_or_retry, too_deep
from bot.pieces import utf16_units
from bot.services import Services
from bot.telegram.client import CHANNEL, SECRET_HEADER, build_application, file_base_url
from bot.telegram.replies import Batch, HeldReplies
from bot.telegram.sender import CHAT_INTERVAL, TEXT_LIMIT, TEXTS, close_outbound
from bot.telegram.updates import ID_LIMIT, Incoming, NotNow, fallback, to_inbound
from dialogs.throttle import Verdict
from dialogs.types import Reply
from storage.db import transaction
from workflow.signatures import same_secret

log = logging.getLogger("mashangyi.telegram")

WEBHOOK_PATH = "/telegram"
#: Updates are a few KiB; anything near this is not Telegram.
MAX_BODY = 1024 * 1024


@dataclass
class _Turn:
    batch: Batch | None = None


class TelegramChannel:
    """The webhook's state: the PTB Application (built at start-up) and the services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.secret = services.config.telegram.webhook_secret.get_secret_value().encode()
        self._application: Application | None = None
        self.replies = HeldReplies(services)
        #: Turns answered whose replies are being sent, and each chat's latest such turn.
        self._background: set[asyncio.Task[bool]] = set()
        self._tails: dict[int, asyncio.Task[bool]] = {}

    @property
    def application(self) -> Application:
        if self._application is None:
            raise RuntimeError("the Telegram channel has not been started")
        return self._application

    @property
    def bot(self) -> Bot:
        return self.application.bot

    async def start(self) -> None:
        self._application = build_application(self.services.config)
        try:
            await self._application.initialize()  # getMe
        except InvalidToken:
            raise ConfigError("telegram.bot_token: the Bot API rejected this token") from None
        except TelegramError as exc:
            # Telegram unreachable must not stop WeChat or the outbox: sending works
            # without getMe, so serve anyway and let each request fail on its own.
            log.warning("telegram: Bot API unreachable at start-up (%s); serving anyway", exc)
            return
        await self._application.start()

    async def stop(self) -> None:
        # Replies being sent finish first (each send is bounded by PTB's timeouts); what is
        # left is held by this worker identity, which the next start reclaims at once.
        await self.idle()
        await self.replies.stop()
        application, self._application = self._application, None
        if application is None:
            return
        if application.running:
            await application.stop()
        await application.shutdown()
        await application.bot.shutdown()  # also when initialize() failed half-way

    # -- one update ----------------------------------------------------------------------

    async def webhook(self, request: web.Request) -> web.Response:
        if not same_secret(self.secret, request.headers.get(SECRET_HEADER, "")):
            return web.Response(status=403, text="forbidden")
        body = await _read_capped(request, MAX_BODY)
        if body is None:
            return web.Response(status=413, text="too large")
        if too_deep(body):  # json.loads would overflow the stack on every delivery
            error = Refused(f"JSON nested deeper than {MAX_DEPTH} levels")
            return await self._failed(body_key(body), error, body)
        try:
            data = json.loads(body)
        except ValueError:  # also UnicodeDecodeError
            return web.Response(status=400, text="not JSON")
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            return web.Response(status=400, text="not an update")
        try:
            if not 0 <= update_id < ID_LIMIT:  # also the receipt's and the outbox's key
                raise Refused("update_id out of the Bot API's range")
            await self.handle_json(data)
        except NotNow:
            return web.Response(status=429, text="slow down")
        except Exception as exc:
            return await self._failed(str(update_id), exc, body)
        return _ok()

    async def _failed(self, key: str, error: Exception, body: bytes) -> web.Response:
        """A 500 when a retry can help (the dialogs' receipts make it safe); otherwise the
        failure is recorded and answered 200, or Telegram would deliver it forever."""
        services = self.services
        retry = await record_or_retry(
            services.sessions, services.clock, channel=CHANNEL, key=key, error=error, body=body
        )
        return web.Response(status=500, text="error") if retry else _ok()

    async def handle_json(self, data: dict[str, Any]) -> None:
        try:
            update = Update.de_json(data, self.bot)
        except Exception:
            log.warning("telegram: cannot parse update %s", data["update_id"], exc_info=True)
            await self.serve(data["update_id"], fallback(data), None)
            return
        await self.handle_update(update)

    async def handle_update(self, update: Update) -> None:
        await self.serve(update.update_id, to_inbound(update), update.callback_query)

    async def serve(
        self, update_id: int, incoming: Incoming | None, query: CallbackQuery | None
    ) -> None:
        """Handle one update and return once its replies are in the outbox; they are sent
        right after, in the background (a slow Bot API does not hold the webhook)."""
        if query is not None:
            await self._answer(query)
        if incoming is None:
            return
        turn = _Turn()

        async def write(session: AsyncSession, replies: Sequence[Reply], now: datetime) -> None:
            turn.batch = await self.replies.write(
                session, update_id, incoming.chat_id, replies, "reply"
            )

        handled = await self.services.dialogs.process(incoming.inbound, write_replies=write)
        if handled.refused is Verdict.REFUSE_QUIETLY:
            # The rest of a flood (already told once): not handled, so not acknowledged
            # either; Telegram delivers it again later, when the window may have room.
            raise NotNow(update_id)
        if turn.batch is None:
            # Not handled by this delivery: refused (its notice has keys of its own, so a
            # later delivery, handled, still sends the real replies), or answered from its
            # receipt (the rows exist: a re-delivery writes and sends nothing).
            tag = "refused" if handled.refused else "reply"
            async with transaction(self.services.sessions) as session:
                turn.batch = await self.replies.write(
                    session, update_id, incoming.chat_id, handled.replies, tag
                )
        chat = incoming.chat_id
        task = asyncio.ensure_future(self._finish(query, turn.batch, self._tails.get(chat)))
        self._tails[chat] = task
        self._background.add(task)

        def done(finished: asyncio.Task[bool]) -> None:
            self._background.discard(finished)
            if self._tails.get(chat) is finished:
                del self._tails[chat]
            if not finished.cancelled() and finished.exception() is not None:
                # The rows stay held: the delivery loop sends them when the hold runs out.
                log.warning("telegram: sending a turn's replies failed: %r", finished.exception())

        task.add_done_callback(done)

    async def _finish(
        self, query: CallbackQuery | None, batch: Batch, previous: asyncio.Task[bool] | None
    ) -> bool:
        """Send a turn's replies after the chat's previous turn, a second later; True when
        all went. When the previous turn left some of its replies to the outbox, these queue
        behind them."""
        if previous is not None:
            await asyncio.wait({previous})
            if previous.cancelled() or previous.exception() is not None or not previous.result():
                await self.replies.release(batch)
                return False
            # Turns that piled up in one chat (a slow moment) keep Telegram's pace between
            # them; one turn's replies still go together.
            await asyncio.sleep(CHAT_INTERVAL.total_seconds())
        if query is not None:
            await self._show_choice(query)
        return await self.replies.send(self.bot, batch)

    async def idle(self) -> None:
        """Wait until the replies of the updates answered so far have been sent (or left to
        the outbox); for shutdown and tests."""
        while self._background:
            await asyncio.wait(set(self._background))

    async def _answer(self, query: CallbackQuery) -> None:
        """Stop the client's spinner. A re-delivered or late query is refused: harmless."""
        try:
            await self.bot.answer_callback_query(query.id)
        except TelegramError as exc:
            log.info("telegram: answerCallbackQuery %s: %s", query.id, exc)

    async def _show_choice(self, query: CallbackQuery) -> None:
        """Replace the pressed keyboard by a line saying what was chosen, so the chat
        records the choice and old buttons cannot be pressed again by mistake."""
        message = query.message
        if not isinstance(message, Message) or not message.text or not message.reply_markup:
            return  # too old to edit, or already edited by an earlier press
        label = next(
            (
                b.text
                for row in message.reply_markup.inline_keyboard
                for b in row
                if b.callback_data == query.data
            ),
            None,
        )
        if label is None:
            return
        text = f"{message.text}\n\n{TEXTS.text('telegram', 'chosen', label=label)}"
        if utf16_units(text) > TEXT_LIMIT:
            text = message.text
        try:
            # Without reply_markup the keyboard goes. A double tap re-sends the same edit:
            # 400 "message is not modified", which is fine.
            await self.bot.edit_message_text(
                chat_id=message.chat.id, message_id=message.message_id, text=text
            )
        except TelegramError as exc:
            log.info("telegram: could not mark the choice on %s: %s", message.message_id, exc)


def _ok() -> web.Response:
    return web.Response(text="ok")  # any 2xx: Telegram re-delivers everything else


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# -- wiring ----------------------------------------------------------------------------

TELEGRAM = web.AppKey("telegram", TelegramChannel)


def setup(app: web.Application, services: Services) -> None:
    """Add ``POST /telegram`` and the PTB Application's start-up and shut-down."""
    settings = services.config.telegram
    if not settings.webhook_secret.get_secret_value():
        raise ConfigError(
            "telegram.webhook_secret: must be set when telegram.bot_token is "
            "(without it anyone could post updates)"
        )
    file_base_url(settings.base_url)  # a base URL we cannot use stops start-up here
    app[TELEGRAM] = TelegramChannel(services)
    app.router.add_post(WEBHOOK_PATH, _webhook)
    app.cleanup_ctx.append(_lifecycle)


async def _webhook(request: web.Request) -> web.Response:
    return await request.app[TELEGRAM].webhook(request)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    channel = app[TELEGRAM]
    await channel.start()
    yield
    await channel.stop()
    await close_outbound(channel.services)
