"""The public lists and a room's page: ``GET /topics`` (码上建议: publicized topics),
``GET /results`` (码上查情: published results), each city-wide or for a room and everything
below it (``?room=<CODE>``: a district, a town, a village), searchable (``?q=``), a page at
a time (``?after=`` a keyset cursor); ``GET /r/<CODE>``: a room, its publicized topics and
results, and how to raise a topic through the bot (``/r/<CODE>/wechat.png``: the room's
WeChat code, when an account is configured).

No JavaScript anywhere: links and GET forms. The queries are in ``workflow/public.py``.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from bot.qr import telegram_link
from bot.services import Services
from bot.web.pages import PAGES
from bot.wechat.client import WeChatAPI, WeChatError
from dialogs.types import room_payload
from notices.drawing import qr_image
from workflow.public import PAGE_SIZE, Cursor, Listing, public_topics, words_of
from workflow.rooms import ROOM_CODE, RoomInfo, RoomTree

#: Rooms change rarely (an import): the tree is read again at most this often.
TREE_SECONDS = 60
#: Public pages may be cached briefly by a proxy or the browser; nothing on them is private.
HEADERS = {
    "Cache-Control": "public, max-age=30",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
}
ROOM_SHOWN = 5


def html(page: str, status: int = 200) -> web.Response:
    return web.Response(text=page, status=status, content_type="text/html", headers=HEADERS)


class Rooms:
    """The room tree, kept in memory for ``TREE_SECONDS`` (a city has a few thousand)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._tree: RoomTree | None = None
        self._until: datetime | None = None
        self._lock = asyncio.Lock()

    async def tree(self) -> RoomTree:
        now = self.services.clock.now()
        if self._tree is not None and self._until is not None and now < self._until:
            return self._tree
        async with self._lock:
            if self._tree is None or self._until is None or now >= self._until:
                async with self.services.sessions() as session:
                    self._tree = await RoomTree.load(session)
                self._until = now + timedelta(seconds=TREE_SECONDS)
        return self._tree


@dataclass(frozen=True)
class Scope:
    """Where a list looks: a room and its subtree, or everywhere (``room`` None)."""

    room: RoomInfo | None
    chain: list[RoomInfo]  # the room's ancestors, top first (for the breadcrumbs)
    children: list[RoomInfo]
    room_ids: set[int] | None


def scope_of(tree: RoomTree, code: str) -> Scope | None:
    if not code:
        tops = sorted((r for r in tree.rooms.values() if r.parent_id is None), key=_key)
        return Scope(None, [], tops, None)
    room = tree.by_code(code) if ROOM_CODE.fullmatch(code) else None
    if room is None:
        return None
    children = sorted((r for r in tree.rooms.values() if r.parent_id == room.id), key=_key)
    return Scope(room, list(reversed(tree.chain(room.id)[1:])), children, tree.subtree(room.id))


def _key(room: RoomInfo) -> str:
    return room.code


class PublicPages:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.rooms = Rooms(services)
        self._wechat_codes: dict[str, bytes] = {}

    async def topics(self, request: web.Request) -> web.Response:
        return await self._list(request, results=False)

    async def results(self, request: web.Request) -> web.Response:
        return await self._list(request, results=True)

    async def _list(self, request: web.Request, *, results: bool) -> web.Response:
        tree = await self.rooms.tree()
        code = request.query.get("room", "").strip()
        scope = scope_of(tree, code)
        if scope is None:
            raise web.HTTPNotFound(text="没有这个议事室。")
        query = request.query.get("q", "").strip()[:100]
        after = Cursor.decode(request.query.get("after", ""))
        async with self.services.sessions() as session:
            listing = await public_topics(
                session, scope.room_ids, results=results, words=words_of(query), after=after
            )
        page = PAGES.get_template("topics.html").render(
            results=results,
            scope=scope,
            query=query,
            first=after is None,
            listing=listing,
            rooms=tree.rooms,
            path=request.path,
            links=_links(request.path, code, query, listing),
        )
        return html(page)

    async def room(self, request: web.Request) -> web.Response:
        tree = await self.rooms.tree()
        scope = scope_of(tree, request.match_info["code"])
        if scope is None or scope.room is None:
            raise web.HTTPNotFound(text="没有这个议事室。")
        async with self.services.sessions() as session:
            topics = await public_topics(session, scope.room_ids, limit=ROOM_SHOWN)
            results = await public_topics(session, scope.room_ids, results=True, limit=ROOM_SHOWN)
        config = self.services.config
        bot = config.telegram.bot_username
        payload = room_payload(scope.room.code)
        page = PAGES.get_template("room.html").render(
            scope=scope,
            room=scope.room,
            topics=topics,
            results=results,
            rooms=tree.rooms,
            telegram=telegram_link(bot, payload) if bot else "",
            wechat=bool(config.wechat.app_id),
            url=f"{config.server.public_base_url.rstrip('/')}/r/{scope.room.code}",
        )
        return html(page)

    async def room_wechat_code(self, request: web.Request) -> web.Response:
        """The room's WeChat code (the same permanent parametric code as on its poster),
        drawn from the URL WeChat gives for its scene; asked once per room and process."""
        config = self.services.config
        tree = await self.rooms.tree()
        code = request.match_info["code"]
        room = tree.by_code(code) if ROOM_CODE.fullmatch(code) else None
        if not config.wechat.app_id or room is None:
            raise web.HTTPNotFound()
        image = self._wechat_codes.get(room.code)
        if image is None:
            api = WeChatAPI.from_config(config.wechat, self.services.clock)
            try:
                url = (await api.create_qrcode(room_payload(room.code))).url
            except WeChatError:
                raise web.HTTPServiceUnavailable(text="暂时无法生成二维码，请稍后再试。") from None
            finally:
                await api.close()
            buffer = io.BytesIO()
            qr_image(url, 480).save(buffer, "PNG")
            image = self._wechat_codes.setdefault(room.code, buffer.getvalue())
        return web.Response(body=image, content_type="image/png", headers=HEADERS)


def _links(path: str, code: str, query: str, listing: Listing) -> dict[str, str]:
    """The addresses of the next page and of a search's next window."""
    from urllib.parse import urlencode

    base = {k: v for k, v in (("room", code), ("q", query)) if v}
    links = {
        "first": f"{path}?{urlencode(base)}" if base else path,
        "clear": f"{path}?{urlencode({'room': code})}" if code else path,
    }
    if listing.next is not None:
        links["next"] = f"{path}?{urlencode({**base, 'after': listing.next.encode()})}"
    if listing.searched_to is not None:
        links["further"] = f"{path}?{urlencode({**base, 'after': listing.searched_to.encode()})}"
    return links


def setup(app: web.Application, services: Services) -> PublicPages:
    pages = PublicPages(services)
    app.router.add_get("/topics", pages.topics)
    app.router.add_get("/results", pages.results)
    app.router.add_get("/r/{code}", pages.room)
    app.router.add_get("/r/{code}/wechat.png", pages.room_wechat_code)
    return pages


__all__ = ["PAGE_SIZE", "PublicPages", "setup"]
