"""The review page: ``GET /review/<token>?exp=…&sig=…`` shows a topic's card and one form
per action the person may take; ``POST`` to the same address takes one of them.

The signed, single-use link is the capability (workflow/review_links.py): no login, no
CSRF token, and only POST changes anything. Every use is checked like a chat button press
(``workflow.refs.use_ref``): signature, expiry, the reference (this person's, unused,
this topic's current version) and the person's live roles. A refused use of a link we
signed changes nothing but one audit row (``review_link.refused``); a signature we did not
make (anyone can send those, as many as they like) only a log line, rate-limited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.media_store import MediaMissing
from bot.services import Services
from bot.web.pages import PAGES
from storage.db import transaction
from storage.models import Attachment, ButtonRef, Room, Topic
from workflow.audit import LimitedLog, record
from workflow.cards import card_text
from workflow.engine import available_actions
from workflow.errors import InvalidField, WorkflowError
from workflow.fields import default_date
from workflow.lifecycle import FIELDS, TRANSITIONS
from workflow.permissions import load_actor, visible_topic
from workflow.refs import REVIEW_PAGE, check_ref, find_ref, use_ref
from workflow.review_links import ReviewLinks
from workflow.rooms import nearby_rooms
from workflow.texts import label

log = logging.getLogger("mashangyi.review_page")
ROUTE = "/review/{token}"
ROOM_CHOICES = 8
TOKEN_MAX = 24
#: Headers of every answer: the address is a secret (no Referer, no caching, no framing).
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; media-src 'self'; "
        "form-action 'self'"
    ),
}


class Refused(Exception):
    """A use of a link that is not honoured; ``reason`` is audited (``signed``: the link's
    signature is ours) or logged (not signed), the page explains."""

    def __init__(
        self,
        reason: str,
        *,
        status: int = 403,
        ref: ButtonRef | None = None,
        message: str = "",
        state: str = "",
        action: str = "",
        signed: bool = True,
    ) -> None:
        super().__init__(reason)
        self.reason, self.status, self.message = reason, status, message
        self.state, self.action, self.signed = state, action, signed
        self.person_id = ref.person_id if ref else None
        self.topic_id = ref.topic_id if ref else None


@dataclass
class Form:
    action: str
    label: str
    fields: list[dict[str, Any]] = field(default_factory=list)


def setup(app: web.Application, services: Services) -> None:
    page = ReviewPage(services)
    app.router.add_get(ROUTE, page.get)
    app.router.add_post(ROUTE, page.post)
    app.router.add_get(ROUTE + "/media/{attachment}", page.media)


class ReviewPage:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.unsigned = LimitedLog(log, services.clock, level=logging.INFO)

    @property
    def links(self) -> ReviewLinks:
        assert self.services.review_links is not None
        return self.services.review_links

    async def get(self, request: web.Request) -> web.Response:
        now = self.services.clock.now()
        try:
            async with self.services.sessions() as session:
                ref = await self._ref(session, request, now)
                refusal = await check_ref(session, ref, ref.person_id, action=None)
                if refusal is not None:
                    raise Refused(
                        refusal.reason, ref=ref, state=refusal.state, action=refusal.action
                    )
                return await self._page(session, request, ref, now)
        except Refused as refused:
            return await self._refused(request, refused, now)

    async def media(self, request: web.Request) -> web.Response:
        """A photo or recording of the link's topic, for the person the link is for, while
        the link is valid (also after it was used: looking changes nothing)."""
        now = self.services.clock.now()
        try:
            async with self.services.sessions() as session:
                ref = await self._ref(session, request, now)
                actor = await load_actor(session, ref.person_id)
                if await visible_topic(session, actor, ref.topic_id) is None:
                    raise Refused("not_permitted", ref=ref)
                number = request.match_info["attachment"]
                attachment = (
                    await session.get(Attachment, int(number)) if number.isdigit() else None
                )
                if (
                    attachment is None
                    or attachment.topic_id != ref.topic_id
                    or attachment.status != "stored"
                ):
                    raise web.HTTPNotFound()
            data = await self.services.media_store.get(attachment.storage_key)
        except MediaMissing:  # lost from the store (a restore without the media)
            raise web.HTTPNotFound() from None
        except Refused as refused:
            return await self._refused(request, refused, now)
        return web.Response(body=data, content_type=attachment.content_type, headers=HEADERS)

    async def post(self, request: web.Request) -> web.Response:
        now = self.services.clock.now()
        form = await request.post()
        action = str(form.get("action", ""))
        error = ""
        try:
            async with transaction(self.services.sessions) as session:
                ref = await self._ref(session, request, now)
                if action not in TRANSITIONS or str(form.get("topic", "")) != str(ref.topic_id):
                    raise Refused("forged", ref=ref)  # a link is for its own topic only
                topic = await session.get(Topic, ref.topic_id)
                assert topic is not None
                fields = _fields(action, form)
                actor = await load_actor(session, ref.person_id)

                async def step() -> None:
                    await self.services.lifecycle.apply(session, topic, action, actor, **fields)

                try:
                    refusal = await use_ref(session, ref, ref.person_id, now, step, action=action)
                except InvalidField as invalid:  # a wrong answer: the form again, link kept
                    raise Refused(
                        invalid.code, status=400, ref=ref, message=invalid.message
                    ) from None
                except WorkflowError as refusal_:
                    raise Refused(
                        refusal_.code, status=409, ref=ref, message=refusal_.message
                    ) from None
                if refusal is not None:
                    raise Refused(
                        refusal.reason, ref=ref, state=refusal.state, action=refusal.action
                    )
                result = PAGES.get_template("review_done.html").render(
                    action=label("actions", action),
                    topic=topic,
                    state=label("states", topic.state),
                )
            return _html(result)
        except Refused as refused:
            if refused.status != 400:
                return await self._refused(request, refused, now)
            error = refused.message
            await self._audit(refused, now)
        # A wrong answer in the form: the page again with the message (nothing changed).
        try:
            async with self.services.sessions() as session:
                ref = await self._ref(session, request, now)
                again = await check_ref(session, ref, ref.person_id)
                if again is not None:
                    raise Refused(again.reason, ref=ref, state=again.state)
                return await self._page(session, request, ref, now, error=error, status=400)
        except Refused as refused:
            return await self._refused(request, refused, now)

    # -- parts -------------------------------------------------------------------------------

    async def _ref(self, session: AsyncSession, request: web.Request, now: datetime) -> ButtonRef:
        """The reference of a well-signed, unexpired link (refused otherwise)."""
        token = request.match_info["token"]
        exp, sig = request.query.get("exp", ""), request.query.get("sig", "")
        if len(token) > TOKEN_MAX or not self.links.verify(token, exp, sig):
            raise Refused("bad_signature", signed=False)
        ref = await find_ref(session, token)
        if ref is None or ref.action != REVIEW_PAGE:
            raise Refused("forged", ref=ref)
        if now.timestamp() >= int(exp):
            raise Refused("expired", status=410, ref=ref)
        return ref

    async def _page(
        self,
        session: AsyncSession,
        request: web.Request,
        ref: ButtonRef,
        now: datetime,
        *,
        error: str = "",
        status: int = 200,
    ) -> web.Response:
        topic = await session.get(Topic, ref.topic_id)
        assert topic is not None
        actor = await load_actor(session, ref.person_id)
        rooms = await nearby_rooms(session, topic.room_id, ROOM_CHOICES)
        stored = (
            await session.exec(
                select(Attachment)
                .where(Attachment.topic_id == topic.id, Attachment.status == "stored")
                .order_by(col(Attachment.id))
            )
        ).all()
        query = request.rel_url.query_string
        media = [
            {
                "kind": a.kind,
                "text": a.text or "",
                "url": f"{request.rel_url.path}/media/{a.id}?{query}",
            }
            for a in stored
        ]
        photos = [
            {"id": a.id, "n": n, "url": m["url"]}
            for n, (a, m) in enumerate(
                ((a, m) for a, m in zip(stored, media, strict=True) if a.kind == "image"), 1
            )
        ]
        forms = [
            Form(action, label("actions", action), _inputs(action, rooms, photos, now))
            for action in await available_actions(session, topic, actor)
        ]
        page = PAGES.get_template("review.html").render(
            topic=topic,
            media=media,
            state=label("states", topic.state),
            card=await card_text(session, topic, self.services.calendar, now),
            forms=forms,
            error=error,
            target=str(request.rel_url),
        )
        return _html(page, status)

    async def _refused(self, request: web.Request, refused: Refused, now: datetime) -> web.Response:
        await self._audit(refused, now)
        page = PAGES.get_template("review_refused.html").render(
            reason=refused.reason,
            message=refused.message,
            state=refused.state,
            action=refused.action,
        )
        return _html(page, refused.status)

    async def _audit(self, refused: Refused, now: datetime) -> None:
        if not refused.signed:
            self.unsigned.log("review link refused: %s", refused.reason)
            return
        log.info("review link refused: %s (topic %s)", refused.reason, refused.topic_id)
        async with transaction(self.services.sessions) as session:
            await record(
                session,
                "review_link.refused",
                at=now,
                actor_id=refused.person_id,
                reason=refused.reason,
                topic_id=refused.topic_id,
            )


def _html(page: str, status: int = 200) -> web.Response:
    return web.Response(text=page, status=status, content_type="text/html", headers=HEADERS)


def _inputs(
    action: str, rooms: list[Room], photos: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    transition = TRANSITIONS[action]
    names = [
        name
        for name in (*transition.required, *transition.optional)
        if (FIELDS[name].kind != "photos" or photos)  # no photos: nothing to choose
        and FIELDS[name].kind != "uploads"  # photos are sent in the chat, not on a page
    ]
    return [
        {
            "name": name,
            "label": label("fields", name),
            "kind": FIELDS[name].kind,
            "choices": FIELDS[name].choices,
            "max_len": FIELDS[name].max_len,
            "required": name in transition.required,
            "rooms": rooms,
            "photos": photos,
            "default": default_date(name, now).isoformat() if FIELDS[name].default_days else "",
        }
        for name in names
    ]


def _fields(action: str, form: Any) -> dict[str, Any]:
    """The answers for ``action``'s fields (f.<name>); a typed room code wins over the list."""
    transition = TRANSITIONS[action]
    fields: dict[str, Any] = {}
    for name in (*transition.required, *transition.optional):
        value = str(form.get(f"f.{name}", "")).strip()
        if FIELDS[name].kind == "photos":  # one checkbox per photo
            value = ",".join(str(v).strip() for v in form.getall(f"f.{name}", []))
        if FIELDS[name].kind == "room":
            value = str(form.get(f"f.{name}.code", "")).strip() or value
        if value:
            fields[name] = value
    return fields
