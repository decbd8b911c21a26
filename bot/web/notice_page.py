"""A publicized topic's printable notice, ``GET /t/<number>/notice.png|pdf`` (``?kind=results``
for the results'): what the topic page links to for printing, and what the convener's chat
points to. Unknown or not (yet) public: 404, as for the topic page."""

from __future__ import annotations

from aiohttp import web

from bot.notice_files import NoNotice
from bot.services import Services

ROUTE = "/t/{number}/notice.{suffix:png|pdf}"
TYPES = {"png": "image/png", "pdf": "application/pdf"}


def setup(app: web.Application, services: Services) -> None:
    async def get(request: web.Request) -> web.Response:
        kind = request.query.get("kind") or None
        if kind not in (None, "topic", "results"):
            raise web.HTTPNotFound(text="没有这份公示。")
        try:
            files = await services.notices.files(request.match_info["number"], kind)
        except NoNotice:
            raise web.HTTPNotFound(text="没有这份公示。") from None
        suffix = request.match_info["suffix"]
        return web.Response(
            body=files.png if suffix == "png" else files.pdf,
            content_type=TYPES[suffix],
            headers={
                "Content-Disposition": f'inline; filename="{files.notice.filename}.{suffix}"',
                "Cache-Control": "public, max-age=300",
            },
        )

    app.router.add_get(ROUTE, get)
