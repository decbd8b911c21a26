"""The unfollow link of a push that cannot carry a button (a WeChat template message or
subscription notification): ``GET /unfollow/<t|r>/<id>/<person>?exp=…&sig=…`` shows what it
is about (with the topic's page) and a confirm button; ``POST`` to the same address ends
the follow (workflow/follows.py). Only POST changes anything, so a link previewed or
prefetched by a chat app unfollows nobody.

The signed link is the capability (workflow/unfollow_links.py): it can unfollow that person
from that topic or room and nothing else. A second POST changes nothing and says so.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bot.services import Services
from bot.web.pages import PAGES
from storage.db import transaction
from storage.models import Room, Topic
from workflow.follows import Subject, stop_following
from workflow.lifecycle import public_url
from workflow.unfollow_links import SUBJECTS, UnfollowLinks

log = logging.getLogger("mashangyi.unfollow")
ROUTE = r"/unfollow/{subject:[tr]}/{subject_id:\d{1,12}}/{person_id:\d{1,12}}"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
SERVICES: web.AppKey[Services] = web.AppKey("unfollow_services")


def setup(app: web.Application, services: Services) -> None:
    if services.unfollow_links is None:
        return
    app[SERVICES] = services
    app.router.add_get(ROUTE, show)
    app.router.add_post(ROUTE, confirm)


class _Refused(Exception):
    pass


async def _subject(request: web.Request) -> tuple[Services, Subject, int, int, Any]:
    """The link's services, subject, ids and topic or room; raises _Refused when the
    signature is not ours, the link has expired or the subject is gone."""
    services = request.app[SERVICES]
    links = services.unfollow_links
    assert isinstance(links, UnfollowLinks)
    subject = SUBJECTS[request.match_info["subject"]]
    subject_id = int(request.match_info["subject_id"])
    person_id = int(request.match_info["person_id"])
    exp, sig = request.query.get("exp", ""), request.query.get("sig", "")
    if not links.verify(subject, subject_id, person_id, exp, sig):
        log.info("unfollow: a link with a signature not ours")
        raise _Refused("forged")
    if int(exp) < services.clock.now().timestamp():
        raise _Refused("expired")
    async with services.sessions() as session:
        found = await session.get(Topic if subject == "topic" else Room, subject_id)
    if found is None:
        raise _Refused("gone")
    return services, subject, subject_id, person_id, found


def _page(template: str, status: int = 200, /, **context: Any) -> web.Response:
    html = PAGES.get_template(template).render(**context)
    return web.Response(text=html, content_type="text/html", status=status, headers=HEADERS)


def _context(services: Services, subject: Subject, found: Any) -> dict[str, Any]:
    if subject == "topic":
        url = public_url(services.config.server.public_base_url, found.number, found.state)
        return {"kind": "议题", "name": f"{found.number}「{found.title}」", "url": url}
    return {"kind": "议事室", "name": found.name, "url": ""}


async def show(request: web.Request) -> web.Response:
    try:
        services, subject, _, _, found = await _subject(request)
    except _Refused as refused:
        return _page("unfollow_refused.html", 403, reason=str(refused))
    return _page("unfollow.html", **_context(services, subject, found), action=request.path_qs)


async def confirm(request: web.Request) -> web.Response:
    try:
        services, subject, subject_id, person_id, found = await _subject(request)
    except _Refused as refused:
        return _page("unfollow_refused.html", 403, reason=str(refused))
    async with transaction(services.sessions) as session:
        changed = await stop_following(
            session, person_id, subject, subject_id, services.clock.now()
        )
    return _page("unfollow_done.html", **_context(services, subject, found), changed=changed)
