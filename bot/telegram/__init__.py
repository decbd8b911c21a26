"""The Telegram channel (python-telegram-bot, under our own aiohttp server).

    client.py    our configuration as PTB's Bot; the outbound client and the media fetcher
    sender.py    a reply as Bot API messages, Bot API errors as outbox failures, the sender
    updates.py   an Update as our Inbound
    replies.py   the webhook's replies: held in the outbox, sent right after, recorded
    webhook.py   POST /telegram, the TelegramChannel and its start-up and shut-down
    polling.py   long polling for a trial without a public HTTPS address
    commands.py  ``mashangyi telegram set-webhook | poll``

Only the first three are re-exported here: they are what the services (bot/services.py)
build on. The rest use the services, so importing them here would make ``bot.services`` and
this package import each other; import those from their modules.
"""

from bot.telegram.client import SECRET_HEADER, TelegramMediaFetcher, file_base_url
from bot.telegram.sender import (
    CHAT_INTERVAL,
    TEXT_LIMIT,
    TelegramSender,
    close_outbound,
    telegram_outbound,
)
from bot.telegram.updates import to_inbound

__all__ = [
    "CHAT_INTERVAL",
    "SECRET_HEADER",
    "TEXT_LIMIT",
    "TelegramMediaFetcher",
    "TelegramSender",
    "close_outbound",
    "file_base_url",
    "telegram_outbound",
    "to_inbound",
]
