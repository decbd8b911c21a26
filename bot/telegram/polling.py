"""Long polling, for trying the bot without a public HTTPS address (``mashangyi telegram
poll``): getUpdates fed to the webhook's own ``TelegramChannel``."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram.error import NetworkError, TelegramError

from bot.config import ConfigError
from bot.services import Services
from bot.telegram.client import require_token
from bot.telegram.updates import ALLOWED_UPDATES, NotNow
from bot.telegram.webhook import TelegramChannel

log = logging.getLogger("mashangyi.telegram")


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
    require_token(services.config)
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
