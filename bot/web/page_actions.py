"""Page actions inside WeChat: ``POST /t/<number>/act`` with ``action`` = like, unlike,
follow, unfollow or suggest (``body``), from the forms of a topic's page for a person the
web authorization named (bot/web/web_auth.py).

Refused, changing nothing (403): no valid session cookie; a form token that is not this
session's for this topic (a form posted from elsewhere, or made for someone else); an
``openid`` in the form (the person is the cookie's, never the form's). The workflow's own
refusals (a withdrawn topic, suggestions closed, too long) come back on the page. A double
tap is one like, one follow (the workflow's upserts) and one suggestion (``nonce``: the
form's own, the suggestion's key). After a change: back to the page (303, see other).
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from bot.services import Services
from bot.web import web_auth
from bot.web.pages import PAGES
from storage.db import transaction
from workflow.audit import LimitedLog
from workflow.errors import WorkflowError
from workflow.participation import set_follow_topic, set_like, suggest
from workflow.public import find_public_topic

log = logging.getLogger("mashangyi.page_actions")
ROUTE = "/t/{number}/act"
ACTIONS = frozenset({"like", "unlike", "follow", "unfollow", "suggest"})
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
HEADERS = {"Cache-Control": "no-store"}


def setup(app: web.Application, services: Services) -> None:
    if not web_auth.enabled(services):
        return
    refused_log = LimitedLog(log, services.clock, level=logging.INFO)
    words = services.config.sensitive_words()

    async def act(request: web.Request) -> web.Response:
        number = request.match_info["number"]
        form = await request.post()
        viewer = web_auth.viewer(request, services)
        sessions = request.app[web_auth.SESSIONS]
        action = str(form.get("action", ""))
        if viewer is None:
            return refuse("no_session", refused_log)
        if "openid" in form and str(form.get("openid")) != viewer.openid:
            return refuse("other_openid", refused_log)
        if not sessions.check_form(viewer, number, str(form.get("token", ""))):
            return refuse("bad_token", refused_log)
        if action not in ACTIONS:
            return refuse("bad_action", refused_log)
        now = services.clock.now()
        nonce = str(form.get("nonce", ""))
        if action == "suggest" and not NONCE.fullmatch(nonce):
            return refuse("bad_nonce", refused_log)
        target = f"/t/{number}#participate"
        try:
            async with transaction(services.sessions) as session:
                topic = await find_public_topic(session, number)
                if topic is None:
                    raise web.HTTPNotFound()
                if action in ("like", "unlike"):
                    await set_like(session, viewer.person_id, topic, action == "like", now)
                elif action in ("follow", "unfollow"):
                    await set_follow_topic(
                        session, viewer.person_id, topic, action == "follow", now
                    )
                else:
                    made = await suggest(
                        session,
                        viewer.person_id,
                        topic,
                        str(form.get("body", "")),
                        f"web:{viewer.person_id}:{nonce}",
                        words,
                        now,
                    )
                    # What its author is told on the page (a held one awaits review).
                    said = "held" if made.status == "held" else "ok"
                    target = f"/t/{number}?said={said}#participate"
        except WorkflowError as refusal:
            page = PAGES.get_template("action_refused.html").render(
                message=refusal.message, number=number
            )
            return web.Response(text=page, status=409, content_type="text/html", headers=HEADERS)
        # After the transaction: an exception inside it would roll the change back.
        raise web.HTTPSeeOther(target, headers=HEADERS)

    app.router.add_post(ROUTE, act)


def refuse(reason: str, refused_log: LimitedLog) -> web.Response:
    refused_log.log("page action refused: %s", reason)
    page = PAGES.get_template("action_refused.html").render(message="", number="")
    return web.Response(text=page, status=403, content_type="text/html", headers=HEADERS)
