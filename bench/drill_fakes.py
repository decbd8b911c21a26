"""What bench/fault_drill.py puts around the service: fake WeChat and Telegram APIs that
record every send with the time it arrived, and a TCP proxy in front of PostgreSQL that can
stall or refuse connections.

Leaner than tests/fakes/: the drill needs arrival times (per-chat rate, order), a Bot API
that can be down for a stretch of wall-clock time, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TG_TOKEN = "123456:DRILL-token_for-the-fake"
#: What the fake Bot API tells a sender to wait during an outage (Telegram's words).
RETRY_AFTER = 5


@dataclass(frozen=True)
class Sent:
    """One message that reached a person through a platform API."""

    at: float  # time.monotonic() when the fake accepted it
    chat: str  # openid or Telegram chat id, as text
    text: str  # what the person reads (a msgmenu's head and options, a template's summary)


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]


@dataclass
class FakeWeChat:
    """api.weixin.qq.com: tokens, customer-service and template messages, all accepted."""

    sent: list[Sent] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _tokens: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner, self.port = await _serve(app)
        return f"http://127.0.0.1:{self.port}/"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        raw = await request.read()
        body: dict[str, Any] = json.loads(raw) if raw else {}
        if path == "cgi-bin/stable_token":
            answer = {"access_token": f"DRILL-{next(self._tokens)}", "expires_in": 7200}
            return web.json_response(answer)
        if path == "cgi-bin/message/custom/send":
            self.sent.append(Sent(time.monotonic(), str(body.get("touser")), _shown(body)))
        elif path == "cgi-bin/message/template/send":
            data = body.get("data", {})
            text = " ".join(str(v.get("value", "")) for v in data.values())
            self.sent.append(Sent(time.monotonic(), str(body.get("touser")), text))
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": 1})


def _shown(body: dict[str, Any]) -> str:
    if body.get("msgtype") == "msgmenu":
        menu = body.get("msgmenu", {})
        options = " ".join(str(o.get("content", "")) for o in menu.get("list", []))
        return f"{menu.get('head_content', '')} {options}"
    return str(body.get("text", {}).get("content", ""))


@dataclass
class FakeBotAPI:
    """The Telegram Bot API. ``down_until``: until then (monotonic) every call is refused,
    429 with retry_after and 502 in turn, as Telegram and its proxies do in an outage."""

    sent: list[Sent] = field(default_factory=list)
    refused: int = 0
    down_until: float = 0.0
    port: int = 0
    _runner: web.AppRunner | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._method)
        app.router.add_get("/bot{token}/{method}", self._method)
        self._runner, self.port = await _serve(app)
        return f"http://127.0.0.1:{self.port}/bot"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params |= await request.json()
        elif request.can_read_body:
            params |= {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if time.monotonic() < self.down_until and method != "getMe":
            self.refused += 1
            if self.refused % 2:
                return _error(429, f"Too Many Requests: retry after {RETRY_AFTER}", RETRY_AFTER)
            return web.Response(status=502, text="<html>502 Bad Gateway</html>")
        bot = {"id": 123456, "is_bot": True, "first_name": "码上议", "username": "drill_bot"}
        if method == "getMe":
            return _ok(bot)
        if method == "sendMessage":
            chat = str(params.get("chat_id"))
            self.sent.append(Sent(time.monotonic(), chat, str(params.get("text", ""))))
            message = {
                "message_id": next(self._ids),
                "from": bot,
                "chat": {"id": int(chat), "type": "private", "first_name": "居民"},
                "date": int(time.time()),
                "text": params.get("text", ""),
            }
            return _ok(message)
        return _ok(True)  # answerCallbackQuery, editMessageText, setWebhook…


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: int) -> web.Response:
    body = {"ok": False, "error_code": status, "description": description}
    body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)


class PostgresProxy:
    """127.0.0.1:<port> → PostgreSQL. ``mode``: "up" forwards; "stall" accepts and keeps
    connections but forwards nothing (a hung server or network); "refuse" drops every
    connection and closes new ones at once (a server that is down)."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def set_mode(self, mode: str) -> None:
        self._refusing = mode == "refuse"
        if mode == "up":
            self._flowing.set()
        else:
            self._flowing.clear()
        if self._refusing:
            for writer in list(self._writers):
                writer.transport.abort()  # a reset, as when the server's process dies

    async def close(self) -> None:
        self.set_mode("refuse")
        if self._server is not None:
            self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                await self._flowing.wait()  # stalled: hold the bytes until the outage ends
                if self._refusing or writer.is_closing():
                    return
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()  # one side closed: close the other
