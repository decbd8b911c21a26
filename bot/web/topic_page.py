"""A topic's public page, ``GET /t/<number>``, and its approved photos,
``GET /t/<number>/photo/<id>``.

A topic has a page only once it is publicized (``PUBLIC_STATES``); before that, or
declined, redirected or withdrawn, its number answers as an unknown one does. The page shows
what ``workflow.public.public_topic`` gives: never the submitter, a phone, a location, a
held or hidden suggestion. A photo is served only when the convener allowed it at
publication (the publish step's ``photos``); any other attachment id answers 404, whatever
topic it belongs to.

Opened inside WeChat, with the account's subscription template configured
(``wechat.subscribe_template_id``), the page offers "结果公布时通知我": WeChat's open tag
``<wx-open-subscribe>``, which needs the JS-SDK and a signed ``wx.config``
(bot/wechat/jssdk.py); its script is the only one the page ever has, allowed by nonce.
Elsewhere, or with JavaScript off, none of it is there and the page works as before. The
consent itself comes back as a ``subscribe_msg_popup_event`` (workflow/consents.py).
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from bot.media_store import MediaMissing
from bot.qr import telegram_link
from bot.services import Services
from bot.web import web_auth
from bot.web.pages import PAGES, day, minute
from bot.web.public_pages import HEADERS, html
from bot.web.wechat_codes import temporary_code
from bot.wechat.client import WeChatAPI, WeChatError
from bot.wechat.jssdk import JsapiTickets
from workflow import satisfaction
from workflow.clock import CHINA, last_day
from workflow.participation import SUGGESTION_MAX, stance, suggestions_open
from workflow.public import approved_photo, find_public_topic, public_topic
from workflow.satisfaction import rounds
from workflow.texts import by_day

ROUTE = "/t/{number}"
DESCRIPTION = 100
#: A topic's WeChat code (scene p_<number>) is a temporary one (a permanent code per topic
#: would use up the account's 100,000): made for this long, shown while a day of it is left.
CODE_DAYS = 30
CODES_KEPT = 1000
#: WeChat's JS-SDK, which the open tag needs (its documented address).
JSSDK = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js"
log = logging.getLogger("mashangyi.web")


def setup(app: web.Application, services: Services) -> None:
    #: number → (PNG, made at), newest last: WeChat is asked once a month per topic.
    codes: OrderedDict[str, tuple[bytes, datetime]] = OrderedDict()
    config = services.config
    #: One client for the pages (its access token kept), and the JS-SDK ticket.
    api = WeChatAPI.from_config(config.wechat, services.clock) if config.wechat.app_id else None
    tickets = JsapiTickets(api, services.clock, services.redis) if api is not None else None
    if api is not None:

        async def close_api(app: web.Application) -> None:
            await api.close()

        app.on_cleanup.append(close_api)

    async def subscribe(request: web.Request) -> dict[str, Any] | None:
        """The open tag's template ids and ``wx.config``, for a page opened inside WeChat
        with a subscription template configured; else (or WeChat away) None."""
        template = config.wechat.subscribe_template_id
        if tickets is None or not template or not web_auth.in_wechat(request):
            return None
        url = config.server.public_base_url.rstrip("/") + request.path_qs
        try:
            wx = await tickets.config(url)
        except WeChatError as exc:  # the page works without the button
            log.warning("topic page: no JS-SDK ticket: %s", exc)
            return None
        return {"templates": template, "config": wx, "sdk": JSSDK}

    async def get(request: web.Request) -> web.Response:
        now = services.clock.now()
        async with services.sessions() as session:
            topic = await find_public_topic(session, request.match_info["number"])
            if topic is None:
                raise web.HTTPNotFound(text="没有这个议题。")
            view = await public_topic(session, topic, now)
            in_wechat = web_auth.enabled(services) and web_auth.in_wechat(request)
            viewer = web_auth.viewer(request, services) if in_wechat else None
            assert topic.id is not None
            mine = await stance(session, viewer.person_id, topic.id) if viewer else None
            answered = await rounds(session, topic.id)
        bot = config.telegram.bot_username
        offer = await subscribe(request)
        script_nonce = secrets.token_urlsafe(16) if offer else ""
        base = config.server.public_base_url.rstrip("/")
        background = " ".join(topic.background.split())
        page = PAGES.get_template("topic.html").render(
            view=view,
            topic=topic,
            room=view.room,
            due=by_day(last_day(topic.review_due_at)) if topic.review_due_at else None,
            steps=[_step(s.action, s.at, s.details) for s in view.steps],
            description=background[:DESCRIPTION] + ("…" if len(background) > DESCRIPTION else ""),
            url=f"{base}/t/{topic.number}",
            telegram=telegram_link(bot, f"p_{topic.number}") if bot else "",
            wechat_code=bool(config.wechat.app_id),
            in_wechat=in_wechat,
            viewer=viewer,
            stance=mine,
            token=request.app[web_auth.SESSIONS].form_token(viewer, topic.number) if viewer else "",
            nonce=secrets.token_urlsafe(16),
            subscribe=offer,
            script_nonce=script_nonce,
            open=suggestions_open(topic, now),
            limit=SUGGESTION_MAX,
            said=request.query.get("said", ""),
            now=now,
            # 问题解决了吗？ — the latest implementation's answers (ratings, not reasons).
            satisfaction=answered[-1] if answered else None,
            answers=satisfaction.ANSWERS,
        )
        response = html(page)
        if offer:  # the JS-SDK, and our one inline script
            response.headers["Content-Security-Policy"] = scripts_allowed(
                response.headers["Content-Security-Policy"], script_nonce
            )
        # What the page shows depends on the browser and the person: never cached shared.
        response.headers["Cache-Control"] = "private, no-cache"
        response.headers["Vary"] = "User-Agent, Cookie"
        return response

    async def wechat_code(request: web.Request) -> web.Response:
        """The topic's temporary WeChat code: scanned, it opens the bot on this topic."""
        now = services.clock.now()
        number = request.match_info["number"]
        if not config.wechat.app_id:
            raise web.HTTPNotFound()
        async with services.sessions() as session:
            if await find_public_topic(session, number) is None:
                raise web.HTTPNotFound()
        kept = codes.get(number)
        if kept is None or now - kept[1] > timedelta(days=CODE_DAYS - 1):
            png = await temporary_code(services, f"p_{number}", CODE_DAYS * 24 * 3600)
            kept = codes[number] = (png, now)
            while len(codes) > CODES_KEPT:
                codes.popitem(last=False)
        codes.move_to_end(number)
        return web.Response(body=kept[0], content_type="image/png", headers=HEADERS)

    async def photo(request: web.Request) -> web.Response:
        ident = request.match_info["attachment"]
        async with services.sessions() as session:
            topic = await find_public_topic(session, request.match_info["number"])
            attachment = (
                await approved_photo(session, topic, int(ident))
                if topic is not None and ident.isdigit() and len(ident) < 12
                else None
            )
        if attachment is None:
            raise web.HTTPNotFound()
        try:
            data = await services.media_store.get(attachment.storage_key)
        except MediaMissing:  # lost from the store (a restore without the media): not ours
            raise web.HTTPNotFound() from None
        return web.Response(body=data, content_type=attachment.content_type, headers=HEADERS)

    app.router.add_get(ROUTE, get)
    app.router.add_get(ROUTE + "/photo/{attachment}", photo)
    app.router.add_get(ROUTE + "/wechat.png", wechat_code)


def scripts_allowed(policy: str, nonce: str) -> str:
    """``policy`` allowing the JS-SDK and the page's inline script (by its ``nonce``)."""
    return f"{policy}; script-src {JSSDK.rsplit('/open/', 1)[0]} 'nonce-{nonce}'"


def _step(action: str, at: datetime, details: dict[str, Any]) -> dict[str, Any]:
    shown = dict(details)
    if "time" in shown:  # a meeting's time, recorded as an ISO string
        try:
            shown["time"] = minute(datetime.fromisoformat(str(shown["time"])).astimezone(CHINA))
        except ValueError:
            shown.pop("time")
    return {"action": action, "day": day(at), "details": shown}
