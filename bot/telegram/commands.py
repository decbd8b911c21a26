"""``mashangyi telegram set-webhook | poll``."""

from __future__ import annotations

import argparse
import asyncio

from telegram.error import InvalidToken

from bot.config import Config, ConfigError
from bot.services import Services, build_services
from bot.telegram.client import make_bot, require_token
from bot.telegram.polling import poll
from bot.telegram.sender import close_outbound
from bot.telegram.updates import ALLOWED_UPDATES
from bot.telegram.webhook import WEBHOOK_PATH


async def set_webhook(services: Services) -> str:
    """Point Telegram at ``<server.public_base_url>/telegram`` with our secret; the URL."""
    config = services.config
    require_token(config)
    secret = config.telegram.webhook_secret.get_secret_value()
    if not secret:
        raise ConfigError("telegram.webhook_secret: must be set before setting the webhook")
    url = config.server.public_base_url.rstrip("/") + WEBHOOK_PATH
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


async def run_command(config: Config, args: argparse.Namespace) -> int:
    """``mashangyi telegram set-webhook | poll``."""
    services = build_services(config, getattr(args, "clock", None))
    try:
        if args.telegram == "set-webhook":
            url = await set_webhook(services)
            print(f"Telegram now delivers this bot's updates to {url}")
            return 0
        stop = asyncio.Event()
        await services.take_worker_id("telegram-poll")
        outbox = asyncio.create_task(
            services.dispatcher().run_forever(stop, config.outbox.poll_seconds)
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
