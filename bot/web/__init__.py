"""The aiohttp application. Platform routes (WeChat, Telegram) plug in here; every HTML
page is a module of this package (``topic_page``, ``review_page``), its templates in
``templates/``, rendered through ``pages.PAGES``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from typing import Any

from aiohttp import web

from bot.services import Services
from bot.telegram import webhook as telegram
from bot.web import (
    health,
    meeting_page,
    notice_page,
    page_actions,
    public_pages,
    review_page,
    topic_page,
    unfollow,
    web_auth,
)
from bot.wechat import webhook as wechat
from notices.scheduler import SweepScheduler

log = logging.getLogger("mashangyi.web")
SERVICES = web.AppKey("services", Services)


def create_app(services: Services, *, run_outbox: bool = True) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SERVICES] = services
    health.setup(app, services)  # /healthz, /readyz, /metrics; request ids and timings
    topic_page.setup(app, services)  # /t/<number>: public topic pages
    notice_page.setup(app, services)  # /t/<number>/notice.png|pdf: printable notices
    meeting_page.setup(app, services)  # /m/<code>, .ics, wechat.png: a meeting's join page
    public_pages.setup(app, services)  # /topics, /results, /r/<code>: 码上建议, 码上查情, rooms
    web_auth.setup(app, services)  # /auth/wechat: WeChat web authorization for page actions
    page_actions.setup(app, services)  # POST /t/<number>/act: like, follow, suggest in WeChat
    if services.review_links is not None:
        review_page.setup(app, services)  # /review/<token>: signed, single-use review links
    unfollow.setup(app, services)  # /unfollow/…: signed unfollow links of pushes
    wechat.setup(app, services)  # /wechat when a callback token is configured
    if services.config.telegram.bot_token.get_secret_value():
        telegram.setup(app, services)  # /telegram and the PTB Application
    if run_outbox:
        app.cleanup_ctx.append(_outbox_loop)
        app.cleanup_ctx.append(_inbox_loop)
        app.cleanup_ctx.append(_media_loop)
        app.cleanup_ctx.append(_push_loop)
        app.cleanup_ctx.append(_reminder_sweeps)
    return app


async def _reminder_sweeps(app: web.Application) -> AsyncIterator[None]:
    """The scheduler's reminder sweeps (nudges, escalation, yearly activity)."""
    services = app[SERVICES]
    scheduler = SweepScheduler(
        services.sweeper().run_once,
        timedelta(minutes=services.config.reminders.sweep_minutes),
    )
    scheduler.start()
    yield
    await scheduler.stop()


def _loop(
    start: Callable[[Services, asyncio.Event], Coroutine[Any, Any, None]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A background loop for the app's lifetime: ``start(services, stop)`` runs until
    ``stop`` is set at shutdown, and is given 10 seconds to finish its round."""

    async def loop(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(start(app[SERVICES], stop))
        yield
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)

    return loop


def _poll_seconds(services: Services) -> float:
    return services.config.outbox.poll_seconds


#: Outbound delivery; kept messages (dialogs/inbox.py); photos and recordings downloaded
#: soon after they arrive, off the request path.
_outbox_loop = _loop(lambda s, stop: s.dispatcher().run_forever(stop, _poll_seconds(s)))
_inbox_loop = _loop(lambda s, stop: s.inbox().run_forever(stop, _poll_seconds(s)))
_media_loop = _loop(lambda s, stop: s.media_downloader().run_forever(stop))
#: Recorded pushes expanded into outbox rows, a chunk per transaction (notices/pushes.py).
_push_loop = _loop(lambda s, stop: s.push_expander().run_forever(stop, _poll_seconds(s)))
