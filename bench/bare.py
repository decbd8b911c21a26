"""The baseline: a bare aiohttp handler that answers ``success`` to any POST."""

import sys

from aiohttp import web


async def success(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="success")


app = web.Application()
app.router.add_post("/wechat", success)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
