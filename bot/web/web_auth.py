"""WeChat web authorization for page actions: ``GET /auth/wechat?next=/t/<number>`` sends
the browser to WeChat's authorize page (snsapi_base, a one-time state); WeChat sends it back
to ``GET /auth/wechat/callback?code=…&state=…``, which takes the state (once), exchanges the
code for the openid, and sets a signed session cookie naming that person before returning
to the page. Only with a WeChat account configured (and so ``server.secret_key``, which
signs the cookie).

``viewer(request)`` is the person a request's cookie names, or None. The rules are in
``workflow/webauth.py``.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.services import Services
from bot.web.pages import PAGES
from bot.wechat.oauth import OAuthError, authorize_url, openid_for_code
from storage.db import transaction
from workflow.audit import LimitedLog
from workflow.webauth import (
    NEXT_PATH,
    SESSION_HOURS,
    Sessions,
    Viewer,
    new_state,
    person_for_openid,
    take_state,
)

log = logging.getLogger("mashangyi.web_auth")
COOKIE = "msy_session"
START, CALLBACK = "/auth/wechat", "/auth/wechat/callback"
SESSIONS = web.AppKey("web_sessions", Sessions)
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def enabled(services: Services) -> bool:
    config = services.config
    return bool(config.wechat.app_id and config.server.secret_key.get_secret_value())


def setup(app: web.Application, services: Services) -> None:
    if not enabled(services):
        return
    sessions = Sessions(services.config.server.secret_key.get_secret_value().encode())
    app[SESSIONS] = sessions
    refused_log = LimitedLog(log, services.clock, level=logging.INFO)
    config = services.config
    base = config.server.public_base_url.rstrip("/")
    secure = base.startswith("https://")

    async def start(request: web.Request) -> web.Response:
        target = request.query.get("next", "")
        if not NEXT_PATH.fullmatch(target):
            raise web.HTTPNotFound()
        async with transaction(services.sessions) as session:
            state = await new_state(session, target, services.clock.now())
        raise web.HTTPFound(authorize_url(config.wechat, base + CALLBACK, state), headers=HEADERS)

    async def callback(request: web.Request) -> web.Response:
        now = services.clock.now()
        async with transaction(services.sessions) as session:
            target = await take_state(session, request.query.get("state", ""), now)
        if target is None:  # forged, replayed or stale: nothing is changed, nobody named
            refused_log.log("web authorization refused: bad state")
            return refused("state")
        try:
            openid = await openid_for_code(config.wechat, request.query.get("code", ""))
        except OAuthError as exc:
            refused_log.log("web authorization refused: %s", exc)
            return refused("code")
        async with transaction(services.sessions) as session:
            person_id = await person_for_openid(session, openid, now)
        response = web.HTTPFound(target, headers=HEADERS)
        response.set_cookie(
            COOKIE,
            sessions.issue(person_id, openid, now),
            max_age=SESSION_HOURS * 3600,
            httponly=True,
            secure=secure,
            samesite="Lax",
            path="/",
        )
        raise response

    app.router.add_get(START, start)
    app.router.add_get(CALLBACK, callback)


def refused(reason: str) -> web.Response:
    page = PAGES.get_template("auth_refused.html").render(reason=reason)
    return web.Response(text=page, status=403, content_type="text/html", headers=HEADERS)


def viewer(request: web.Request, services: Services) -> Viewer | None:
    """The person this request's session cookie names (None: none, or not one we signed,
    or expired)."""
    sessions = request.app.get(SESSIONS)
    cookie = request.cookies.get(COOKIE, "")
    if sessions is None or not cookie:
        return None
    return sessions.read(cookie, services.clock.now())


def in_wechat(request: web.Request) -> bool:
    """Opened in WeChat's own browser (where the web authorization works)."""
    return "MicroMessenger" in request.headers.get("User-Agent", "")
