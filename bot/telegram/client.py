"""The Bot API client: our configuration as PTB's ``Application`` and ``Bot``, the shared
outbound ``BotClient``, and the media fetcher that downloads through it."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from telegram import Bot
from telegram.ext import Application
from telegram.request import HTTPXRequest

from bot.config import Config, ConfigError
from bot.media import MediaTooLarge
from notices.outbox import PermanentFailure

CHANNEL = "telegram"
#: Where the Bot API sends the webhook secret (``setWebhook``'s secret_token).
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
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
    telegram = config.telegram
    return (
        Application.builder()
        .token(telegram.bot_token.get_secret_value())
        .base_url(telegram.base_url)
        .base_file_url(file_base_url(telegram.base_url))
        .updater(None)
        .job_queue(None)  # scheduling is ours (APScheduler), not PTB's UTC JobQueue
        .build()
    )


def make_bot(config: Config, request: HTTPXRequest | None = None) -> Bot:
    telegram = config.telegram
    return Bot(
        telegram.bot_token.get_secret_value(),
        base_url=telegram.base_url,
        base_file_url=file_base_url(telegram.base_url),
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


def require_token(config: Config) -> None:
    if not config.telegram.bot_token.get_secret_value():
        raise ConfigError("telegram.bot_token: not set")
