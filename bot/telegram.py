"""The Telegram channel (python-telegram-bot, under our own aiohttp server).

Webhook: ``POST /telegram`` → secret check → ``Update`` → one ``Inbound`` → ``Dialogs.handle``
→ the replies sent at once with sendMessage (inline keyboards for buttons). Dialog state lives
in our database, so PTB is used only as a typed Bot API client: no ConversationHandler, no
update queue, no job queue.

Immediate replies are written to the outbox *before* they are sent, held back from the
delivery loop for a short while, and marked sent when the Bot API accepts them. So a reply
that fails (429, 5xx, timeout) is delivered later by the outbox, and a re-delivered update
(Telegram retries when our 200 got lost) does not send its replies a second time.

Also here: the outbox sender, the media fetcher, ``set_webhook`` and a long-polling mode for
trying the bot without a public HTTPS address (``mashangyi telegram set-webhook|poll``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import mimetypes
import re
import warnings
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import text as sql_text
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from bot.config import Config, ConfigError
from bot.edge import MAX_DEPTH, Refused, body_key, is_transient, record_or_retry, too_deep
from bot.media import MediaTooLarge
from bot.pieces import split_text, utf16_units
from dialogs.throttle import Verdict
from dialogs.types import Button, Inbound, Location, Media, Reply
from notices.outbox import (
    RECORD_MARGIN,
    RECORD_RETRY,
    DeliveryError,
    PermanentFailure,
    TemporaryFailure,
    enqueue,
)
from storage.db import SessionFactory, transaction
from storage.models import UNSENT, CardMessage, OutboxMessage
from workflow.clock import Clock
from workflow.signatures import same_secret
from workflow.texts import Catalogue

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("mashangyi.telegram")

CHANNEL = "telegram"
WEBHOOK_PATH = "/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Updates are a few KiB; anything near this is not Telegram.
MAX_BODY = 1024 * 1024
#: The Bot API's limits: message text in UTF-16 code units, callback_data in bytes.
TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64
#: Deep-link payloads (t.me/<bot>?start=<payload>).
START_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The Bot API's ids have at most 52 significant bits; anything beyond is not Telegram's
#: (and would not fit the id columns).
ID_LIMIT = 2**52
#: Only what we serve; Telegram then does not even send the rest.
ALLOWED_UPDATES = ("message", "callback_query")
#: How long an immediate reply's outbox row is kept from the delivery loop while the webhook
#: sends it itself. Longer than PTB's request timeouts, so both never send the same row.
REPLY_HOLD = timedelta(minutes=2)
#: Telegram's rule for one chat: "no more than one message per second" (bursts get 429).
#: The outbox keeps it when it drains a backlog. The other limit, about 30 messages a
#: second over all chats, a dispatcher stays under by sending one message at a time (a
#: round trip each); should several dispatchers exceed it, the 429's retry_after is obeyed.
CHAT_INTERVAL = timedelta(seconds=1)
#: A chat with this many messages waiting or fewer (a card or notice the same turn wrote,
#: as a rule) is caught up by the webhook before its replies; more is a backlog, which the
#: paced delivery loop drains, the replies behind it.
CATCH_UP = 3
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
#: Telegram names voice/audio files by extension only; the downloader wants a type.
CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".oga": "audio/ogg",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
}

TEXTS = Catalogue(Path(__file__).with_name("zh_CN.toml"))


# -- the Bot API client ----------------------------------------------------------------


def file_base_url(base_url: str) -> str:
    """``https://api.telegram.org/bot`` → ``https://api.telegram.org/file/bot``.

    PTB keeps the file URL separate from the API URL; without deriving it, downloads would
    bypass a configured proxy (or a test's fake) and go to the real host.
    """
    head, found, tail = base_url.rpartition("/bot")
    if not found:
        raise ConfigError(f"telegram.base_url: must end with /bot (got {base_url!r})")
    return f"{head}/file/bot{tail}"


def build_application(config: Config) -> Application:
    telegram = config["telegram"]
    return (
        Application.builder()
        .token(telegram["bot_token"])
        .base_url(telegram["base_url"])
        .base_file_url(file_base_url(telegram["base_url"]))
        .updater(None)
        .job_queue(None)  # scheduling is ours (APScheduler), not PTB's UTC JobQueue
        .build()
    )


def make_bot(config: Config, request: HTTPXRequest | None = None) -> Bot:
    telegram = config["telegram"]
    return Bot(
        telegram["bot_token"],
        base_url=telegram["base_url"],
        base_file_url=file_base_url(telegram["base_url"]),
        request=request,
        get_updates_request=request,
    )


class BotClient:
    """One Bot for outbound work (outbox sender, media fetcher), made on first use.

    Building it costs no I/O, so services that never talk to Telegram (most CLI commands)
    open nothing; ``close`` releases the connection pool, and a later use makes a new one.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._bot: Bot | None = None
        self._request: HTTPXRequest | None = None

    def get(self) -> Bot:
        if self._bot is None:
            self._request = HTTPXRequest()
            self._bot = make_bot(self._config, self._request)
        return self._bot

    async def close(self) -> None:
        request, self._bot, self._request = self._request, None, None
        if request is not None:
            await request.shutdown()


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


# -- sending ---------------------------------------------------------------------------


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


async def send_reply(bot: Bot, chat_id: int | str, reply: Reply) -> Message | None:
    """Send one reply; a long text goes as several messages, the buttons under the last
    (which is returned)."""
    pieces = split_text(reply.text, TEXT_LIMIT, utf16_units)
    sent = None
    for number, piece in enumerate(pieces, 1):
        markup = keyboard(reply.buttons) if number == len(pieces) else None
        sent = await bot.send_message(chat_id=chat_id, text=piece, reply_markup=markup)
    return sent


def reply_body(reply: Reply) -> dict[str, Any]:
    body: dict[str, Any] = {"text": reply.text}
    if reply.buttons:
        body["buttons"] = [[b.label, b.payload] for b in reply.buttons]
    return body


def body_reply(body: dict[str, Any]) -> Reply:
    """An outbox body (``text``, maybe ``url`` and ``buttons``) as one reply."""
    text = body.get("text") or ""
    url = body.get("url")
    if url and url not in text:
        text = f"{text}\n\n{TEXTS.text('telegram', 'details', url=url)}"
    buttons = tuple(Button(label, payload) for label, payload in body.get("buttons") or [])
    return Reply(text, buttons)


class TelegramSender:
    """The outbox's sender for the "telegram" channel; ``address`` is the chat id.

    A body with ``edit_message_id`` edits that message (a review card that has been
    handled: the text says by whom, the keyboard goes). A review card that is sent is
    remembered (``CardMessage``) so it can be edited that way later.
    """

    #: The outbox's pace for one chat (notices/outbox.py).
    chat_interval = CHAT_INTERVAL

    def __init__(
        self, client: BotClient, sessions: SessionFactory | None = None, clock: Clock | None = None
    ) -> None:
        self.client, self.sessions, self.clock = client, sessions, clock

    async def send(self, message: OutboxMessage) -> None:
        bot = self.client.get()
        try:
            if "edit_message_id" in message.body:
                await self._edit(bot, message)
                return
            sent = await send_reply(bot, message.address, body_reply(message.body))
        except TelegramError as exc:
            raise delivery_failure(exc) from exc
        if sent is not None and message.topic_id is not None and is_card(message.body):
            await self._remember(message, sent)

    async def _edit(self, bot: Bot, message: OutboxMessage) -> None:
        try:
            await bot.edit_message_text(
                chat_id=message.address,
                text=message.body["text"],
                message_id=int(message.body["edit_message_id"]),
            )
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():  # already says so: done
                raise

    async def _remember(self, message: OutboxMessage, sent: Message) -> None:
        if self.sessions is None or self.clock is None or message.topic_id is None:
            return
        try:
            async with transaction(self.sessions) as session:
                session.add(
                    CardMessage(
                        topic_id=message.topic_id,
                        channel=CHANNEL,
                        chat_id=message.address,
                        message_id=str(sent.message_id),
                        created_at=self.clock.now(),
                    )
                )
        except Exception:  # the card went out; only its later edit is lost
            log.warning("telegram: could not remember card %s", sent.message_id, exc_info=True)


def is_card(body: dict[str, Any]) -> bool:
    """A review card: its buttons are review-button references."""
    return any(payload.startswith("b:") for _, payload in body.get("buttons") or [])


class TelegramMediaFetcher:
    """Downloads a photo or recording by file_id: getFile, then the file URL."""

    def __init__(self, client: BotClient, max_bytes: int) -> None:
        self.client = client
        self.max_bytes = max_bytes

    async def fetch(self, ref: str) -> tuple[bytes, str]:
        bot = self.client.get()
        file = await bot.get_file(ref)
        if file.file_size and file.file_size > self.max_bytes:
            raise MediaTooLarge(f"{file.file_size} bytes > {self.max_bytes}")
        # PTB reads a file_path naming an existing local file from disk instead of
        # downloading it: only ever fetch from the configured file URL.
        if not (file.file_path or "").startswith(bot.base_file_url + "/"):
            raise PermanentFailure(f"getFile gave no downloadable path for {ref}")
        data = bytes(await file.download_as_bytearray())
        if len(data) > self.max_bytes:
            raise MediaTooLarge(f"{len(data)} bytes > {self.max_bytes}")
        return data, _content_type(file.file_path or "")


def _content_type(file_path: str) -> str:
    extension = Path(file_path).suffix.lower()
    guessed = mimetypes.guess_type(file_path)[0]
    return CONTENT_TYPES.get(extension) or guessed or "application/octet-stream"


def telegram_outbound(
    config: Config, sessions: SessionFactory | None = None, clock: Clock | None = None
) -> tuple[dict[str, TelegramSender], dict[str, TelegramMediaFetcher]]:
    """The sender and the media fetcher for ``build_services``; none without a bot token."""
    if not config["telegram"]["bot_token"]:
        return {}, {}
    client = BotClient(config)
    fetcher = TelegramMediaFetcher(client, config["media"]["max_bytes"])
    return {CHANNEL: TelegramSender(client, sessions, clock)}, {CHANNEL: fetcher}


async def close_outbound(services: Services) -> None:
    for user in (services.senders.get(CHANNEL), services.fetchers.get(CHANNEL)):
        client = getattr(user, "client", None)
        if isinstance(client, BotClient):
            await client.close()


# -- receiving -------------------------------------------------------------------------


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
        return make("image", text=caption, media=Media(largest.file_id, "image/jpeg"))
    document = message.document
    if document and message.animation is None and document.mime_type in IMAGE_TYPES:
        return make("image", text=caption, media=Media(document.file_id, document.mime_type))
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


def _fallback(data: dict[str, Any]) -> Incoming | None:
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


@dataclass
class _Batch:
    """A turn's replies as written to the outbox, for ``TelegramChannel._send``."""

    chat_id: int
    hold: datetime  # the held rows' claimed_until
    fresh: list[tuple[str, Reply]]  # rows this delivery wrote (key, reply), in order
    waiting: int  # the chat's older unsent rows (up to CATCH_UP + 1)
    backlog: bool  # one of those has failed before


@dataclass
class _Turn:
    batch: _Batch | None = None


class TelegramChannel:
    """The webhook's state: the PTB Application (built at start-up) and the services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.secret = services.config["telegram"]["webhook_secret"].encode()
        self._application: Application | None = None
        #: Results of sends still to be recorded (the database was away at the time).
        self._recording: set[asyncio.Task[None]] = set()
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
        for task in self._recording:  # what they did not record is sent again after the hold
            task.cancel()
        if self._recording:
            log.warning("telegram: %d sends not recorded at shutdown", len(self._recording))
            await asyncio.wait(self._recording)
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
            await self.serve(data["update_id"], _fallback(data), None)
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
            turn.batch = await self._write(session, update_id, incoming.chat_id, replies, "reply")

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
                turn.batch = await self._write(
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
        self, query: CallbackQuery | None, batch: _Batch, previous: asyncio.Task[bool] | None
    ) -> bool:
        """Send a turn's replies after the chat's previous turn, a second later; True when
        all went. When the previous turn left some of its replies to the outbox, these queue
        behind them."""
        if previous is not None:
            await asyncio.wait({previous})
            if previous.cancelled() or previous.exception() is not None or not previous.result():
                keys = [key for key, _ in batch.fresh]
                await self._settle(keys, batch.hold, **_released(self.services.clock.now()))
                return False
            # Turns that piled up in one chat (a slow moment) keep Telegram's pace between
            # them; one turn's replies still go together.
            await asyncio.sleep(CHAT_INTERVAL.total_seconds())
        if query is not None:
            await self._show_choice(query)
        return await self._send(batch)

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

    async def _write(
        self,
        session: AsyncSession,
        update_id: int,
        chat_id: int,
        replies: Sequence[Reply],
        tag: str,
    ) -> _Batch:
        """Write the replies as outbox rows in the caller's transaction.

        ``tag`` names them in their keys: a refusal ("refused") must not take the keys of
        the replies a later delivery of the same update, handled, will send.

        Each row is held (``sending``, by this process's worker identity) for ``_send``, which
        sends it and records the send right after the Bot API accepts it. When the chat still
        has older messages waiting (a reply that failed, a notice not yet delivered), the
        rows are not held but queued behind them: sent at once they would overtake them.
        """
        clock = self.services.clock
        address = str(chat_id)
        hold = clock.now() + REPLY_HOLD
        waiting, backlog = await _unsent(session, address, CATCH_UP + 1, self.services.worker_id)
        fresh: list[tuple[str, Reply]] = []
        for number, reply in enumerate(replies):
            key = f"{CHANNEL}:{tag}:{update_id}:{number}"
            if await enqueue(
                session,
                key=key,
                channel=CHANNEL,
                address=address,
                kind="reply",
                body=reply_body(reply),
                now=clock.now(),
                held_until=None if waiting else hold,
                held_by=self.services.worker_id,
            ):
                fresh.append((key, reply))
        return _Batch(chat_id, hold, fresh, waiting, backlog)

    async def _send(self, batch: _Batch) -> bool:
        """Send held rows in order and record each; False when some were left to the
        outbox (queued behind older rows, or a send failed)."""
        clock = self.services.clock
        address, hold, fresh = str(batch.chat_id), batch.hold, batch.fresh
        if batch.waiting:
            # Catching up is for a turn's own few notices (a new card to the same chat); a
            # backlog left by failures drains through the outbox, one a second.
            if fresh and batch.waiting <= CATCH_UP and not batch.backlog:
                await self._catch_up(address, batch.waiting + len(fresh))
            elif fresh:
                log.info("telegram: chat %s has a backlog; replies queued behind it", address)
            return False
        # Rows that already existed were sent (or are being sent) by an earlier delivery of
        # this same update: not sending them again is what makes a re-delivery harmless.
        for number, (key, reply) in enumerate(fresh):
            try:
                await send_reply(self.bot, batch.chat_id, reply)
            except TelegramError as exc:
                failure = delivery_failure(exc)
                if isinstance(failure, PermanentFailure):
                    log.warning("telegram: reply %s refused: %s", key, failure.reason)
                    await self._settle(
                        [key], hold, status="dead", attempts=1, last_error=failure.reason[:500]
                    )
                    continue
                wait = failure.retry_after if isinstance(failure, TemporaryFailure) else None
                log.warning("telegram: reply %s left to the outbox: %s", key, failure.reason)
                await self._settle(
                    [key],
                    hold,
                    **_released(clock.now() + (wait or timedelta(0))),
                    # As in the outbox: a wait the platform asked for is not a failed attempt.
                    attempts=0 if wait is not None else 1,
                    last_error=failure.reason[:500],
                )
                # The later replies queue behind it (the outbox keeps a chat's order).
                later = [k for k, _ in fresh[number + 1 :]]
                await self._settle(later, hold, **_released(clock.now()))
                return False
            await self._settle([key], hold, status="sent", sent_at=clock.now(), claimed_until=None)
        return True

    async def _catch_up(self, address: str, rows: int) -> None:
        """Deliver the chat's few waiting messages, then these replies, in order, now: through
        the outbox (one row per round, each claimed and recorded), not paced (a turn's
        messages go out together, as always). Stops at the first row that is not due
        (failed, or held by another process): the delivery loop takes it from there."""
        try:
            await self.services.dispatcher(
                channels=[CHANNEL], addresses=[address], paced=False
            ).drain(max_rounds=rows)
        except Exception:  # the rows are safe in the outbox; the delivery loop sends them
            log.warning("telegram: catching up on chat %s failed", address, exc_info=True)

    async def _settle(self, keys: list[str], hold: datetime, **values: Any) -> None:
        """Record what happened to held rows, unless the delivery loop has taken them (their
        hold ran out, or a restart released them: then ``claimed_until`` is no longer ours).

        Runs on the services' own small pool for results (``records``): a reply sent but not
        recorded is sent again later, so nothing here may wait behind the dialogs' work.
        When the database is away, the record is retried in the background until the hold
        runs out; the update is answered meanwhile (its replies went, or wait in the outbox).
        """
        if not keys:
            return
        try:
            await self._record(keys, hold, values)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("telegram: %s not recorded yet (%r); retrying", keys, exc)
            task = asyncio.ensure_future(self._record_until(keys, hold, values))
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)

    async def _record_until(self, keys: list[str], hold: datetime, values: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (REPLY_HOLD - RECORD_MARGIN).total_seconds()
        while loop.time() < give_up:
            await asyncio.sleep(RECORD_RETRY)
            try:
                await self._record(keys, hold, values)
                return
            except Exception as exc:
                if not is_transient(exc):
                    break
        log.error("telegram: %s never recorded; the outbox sends them again", keys)

    async def _record(self, keys: list[str], hold: datetime, values: dict[str, Any]) -> None:
        async with transaction(self.services.records) as session:
            await session.exec(
                update(OutboxMessage)
                .where(
                    col(OutboxMessage.idempotency_key).in_(keys),
                    col(OutboxMessage.status) == "sending",
                    col(OutboxMessage.claimed_until) == hold,
                )
                .values(**values)
            )


def _released(due: datetime) -> dict[str, Any]:
    """A held row handed to the outbox, due at ``due``."""
    return {"status": "pending", "not_before": due, "claimed_until": None, "claimed_by": None}


async def _unsent(
    session: AsyncSession, address: str, limit: int, mine: str | None
) -> tuple[int, bool]:
    """How many messages to a Telegram chat are neither sent nor given up, counting up to
    ``limit`` (a probe of the partial index ix_outbox_unsent_chat), and whether one of them
    has failed before (a backlog, not a turn's own notices). Rows held by ``mine`` (this
    process's turns in flight) are not counted: those turns send in order, one after
    another (``TelegramChannel._finish``)."""
    found = await session.exec(
        select(OutboxMessage.last_error, OutboxMessage.status, OutboxMessage.claimed_by)
        .where(
            col(OutboxMessage.channel) == CHANNEL,
            col(OutboxMessage.address) == address,
            sql_text(f"outbox_messages.{UNSENT}"),
        )
        .limit(limit)
    )
    rows = [
        (error, status, holder)
        for error, status, holder in found.all()
        if not (status == "sending" and holder == mine)
    ]
    return len(rows), any(error is not None for error, _, _ in rows)


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
    settings = services.config["telegram"]
    if not settings["webhook_secret"]:
        raise ConfigError(
            "telegram.webhook_secret: must be set when telegram.bot_token is "
            "(without it anyone could post updates)"
        )
    file_base_url(settings["base_url"])  # a base URL we cannot use stops start-up here
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


async def set_webhook(services: Services) -> str:
    """Point Telegram at ``<server.public_base_url>/telegram`` with our secret; the URL."""
    config = services.config
    _require_token(config)
    secret = config["telegram"]["webhook_secret"]
    if not secret:
        raise ConfigError("telegram.webhook_secret: must be set before setting the webhook")
    url = config["server"]["public_base_url"].rstrip("/") + WEBHOOK_PATH
    if not url.startswith("https://"):
        raise ConfigError(
            "server.public_base_url: Telegram delivers webhooks only to https:// addresses "
            f"(got {url!r}); for a local trial use `mashangyi telegram poll`"
        )
    bot = make_bot(config)
    try:
        async with bot:  # initialize() calls getMe: a wrong token fails here
            await bot.set_webhook(url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES))
    except InvalidToken:
        raise ConfigError("telegram.bot_token: the Bot API rejected this token") from None
    return url


async def poll(
    services: Services,
    stop: asyncio.Event,
    *,
    replace_webhook: bool = False,
    long_poll_seconds: int = 30,
) -> None:
    """Fetch updates by long polling until ``stop`` is set (no public address needed).

    getUpdates does not work while a webhook is set, and deleting it would take a live
    bot's updates away from its server: that needs ``replace_webhook``.
    """
    _require_token(services.config)
    channel = TelegramChannel(services)
    await channel.start()
    try:
        info = await channel.bot.get_webhook_info()
        if info.url:
            if not replace_webhook:
                raise ConfigError(
                    f"telegram: this bot delivers to a webhook ({info.url}); polling would "
                    "take its updates away. Use another bot for trials, or --replace-webhook"
                )
            await channel.bot.delete_webhook()
        offset: int | None = None
        while not stop.is_set():
            try:
                updates = await channel.bot.get_updates(
                    offset=offset, timeout=long_poll_seconds, allowed_updates=list(ALLOWED_UPDATES)
                )
            except NetworkError as exc:  # includes TimedOut
                log.warning("telegram: getUpdates failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5)
                continue
            for update in updates:
                try:
                    await channel.handle_update(update)
                except NotNow:
                    # Fetch it again after a pause, as a webhook would get it re-delivered.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 2)
                    break
                except Exception:  # polling cannot ask for a retry: log and go on
                    log.exception("telegram: update %s failed", update.update_id)
                offset = update.update_id + 1
        if offset is not None:
            # Confirm what was handled, or the next start would fetch it again.
            with contextlib.suppress(TelegramError):
                await channel.bot.get_updates(offset=offset, limit=1, timeout=0)
    finally:
        await channel.stop()


def _require_token(config: Config) -> None:
    if not config["telegram"]["bot_token"]:
        raise ConfigError("telegram.bot_token: not set")


async def run_command(config: Config, args: argparse.Namespace) -> int:
    """``mashangyi telegram set-webhook | poll``."""
    from bot.services import build_services

    services = build_services(config)
    try:
        if args.telegram == "set-webhook":
            url = await set_webhook(services)
            print(f"Telegram now delivers this bot's updates to {url}")
            return 0
        stop = asyncio.Event()
        await services.take_worker_id("telegram-poll")
        outbox = asyncio.create_task(
            services.dispatcher().run_forever(stop, config["outbox"]["poll_seconds"])
        )
        print("polling Telegram for updates (Ctrl+C stops)", flush=True)
        try:
            await poll(services, stop, replace_webhook=args.replace_webhook)
        finally:
            stop.set()
            await outbox
        return 0
    finally:
        await close_outbound(services)
        await services.close()
