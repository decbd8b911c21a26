"""A fake Telegram Bot API on 127.0.0.1 that records every call and answers like the real one.

Requests arrive as ``POST /bot<token>/<method>`` (PTB sends form fields whose non-string
values are JSON-encoded; JSON bodies and query strings work too) and are answered with
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}``
in the real API's words. Files are served under ``/file/bot<token>/<file_path>``.

Tests can make a method fail (``fail``: 429 with ``retry_after``, 5xx, any 4xx), mark chats
as blocked (403) or unknown (400 chat not found), register downloadable files and queue
updates for ``getUpdates``. ``sendPhoto`` and ``sendDocument`` take a file uploaded as
multipart (the field named for the parameter, or ``attach://<field>``), recorded as an
``Upload`` (``uploads()``); a parameter that is no upload is refused as the API does.

With ``limits`` (``RateLimits``) the fake enforces Telegram's sending limits on
``sendMessage`` as the real API does: 429 with ``retry_after`` past about 30 messages a
second overall (1,000 with ``allow_paid_broadcast``) or one a second per chat (each a token
bucket, so a short burst passes, as it does on Telegram). Time is ``limits.time`` (a test's
clock) and may run ``speed`` times faster (a benchmark).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "123456:TEST-token_for-the-fake"
BOT_ID = 123456
BOT_USERNAME = "mashangyi_test_bot"
#: Fixed "now" for the dates in answers (2026-03-02 10:00 China time).
DATE = 1772416800

# How the real API reads parameters (it parses by parameter type, not by guessing).
_JSON_PARAMS = {
    "reply_markup",
    "allowed_updates",
    "entities",
    "caption_entities",
    "link_preview_options",
    "reply_parameters",
}
_INT_PARAMS = {"message_id", "offset", "limit", "timeout", "max_connections", "cache_time"}
_BOOL_PARAMS = {
    "drop_pending_updates",
    "show_alert",
    "disable_notification",
    "protect_content",
    "allow_paid_broadcast",
}

#: Telegram's limits, enforced as the real API does (400).
TEXT_LIMIT = 4096  # UTF-16 code units
CALLBACK_DATA_LIMIT = 64  # bytes


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int  # the HTTP status the fake answered with
    result: Any = None  # the "result" of a successful answer (e.g. the Message sent)
    at: float = field(default_factory=time.monotonic)  # when it was answered


@dataclass(frozen=True)
class Upload:
    """A file sent to the fake as multipart."""

    filename: str
    content_type: str
    content: bytes


@dataclass
class RateLimits:
    """Telegram's sending limits, for ``FakeBotAPI(limits=…)``."""

    rate: float = 30.0  # messages a second over all chats
    burst: float = 30.0  # bucket size: one second's worth
    paid_rate: float = 1000.0  # with allow_paid_broadcast
    chat_rate: float = 1.0  # messages a second to one chat
    chat_burst: float = 3.0
    speed: float = 1.0  # time runs this many times faster
    time: Callable[[], float] = time.monotonic


class _Bucket:
    def __init__(self, rate: float, size: float, now: float) -> None:
        self.rate, self.size, self.tokens, self.at = rate, size, size, now

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None = None
    html: bool = False


@dataclass
class _Message:
    chat_id: int
    text: str
    reply_markup: dict[str, Any] | None


@dataclass
class FakeBotAPI:
    token: str = TOKEN
    username: str = BOT_USERNAME
    calls: list[Call] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    #: Chats that blocked the bot (403) and chats the bot cannot reach (400).
    blocked: set[int] = field(default_factory=set)
    missing_chats: set[int] = field(default_factory=set)
    webhook: dict[str, Any] | None = None
    limits: RateLimits | None = None
    #: sendMessage calls refused by ``limits`` (429s), and their chats.
    limited: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._buckets: dict[Any, _Bucket] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._files: dict[str, tuple[str, bytes]] = {}
        self._messages: dict[tuple[int, int], _Message] = {}
        self._next_message_id = 100
        self._updates: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._released = False
        self._server: TestServer | None = None
        #: While set, a method named here is answered only once its event is set (a slow
        #: Bot API).
        self.gates: dict[str, asyncio.Event] = {}

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        await self.release_pollers()
        if self._server is not None:
            await self._server.close()

    async def __aenter__(self) -> FakeBotAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """What ``telegram.base_url`` should be set to (PTB appends the token)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}/bot"

    # -- controls for tests --------------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int = 500,
        *,
        retry_after: int | None = None,
        description: str | None = None,
        times: int = 1,
        html: bool = False,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error."""
        if description is None:
            description = {
                400: "Bad Request: chat not found",
                403: "Forbidden: bot was blocked by the user",
                429: f"Too Many Requests: retry after {retry_after}",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(status, "Error")
        self._failures.setdefault(method, []).extend(
            _Failure(status, description, retry_after, html) for _ in range(times)
        )

    def add_file(self, file_id: str, content: bytes, file_path: str) -> None:
        self._files[file_id] = (file_path, content)

    async def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for ``getUpdates`` (long polling)."""
        async with self._changed:
            self._updates.append(update)
            self._changed.notify_all()

    async def release_pollers(self) -> None:
        """From now on ``getUpdates`` does not wait: a waiting call returns at once (with
        whatever is queued, maybe nothing), and so do later ones."""
        async with self._changed:
            self._released = True
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; it is checked after every call the fake answers.
        ``within`` only guards against a hung test: a passing test never reaches it."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), within)

    # -- reading what happened -----------------------------------------------------------

    def requests(self, method: str, *, ok_only: bool = True) -> list[dict[str, Any]]:
        return [
            c.params for c in self.calls if c.method == method and (not ok_only or c.status == 200)
        ]

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def results(self, method: str) -> list[Any]:
        return [c.result for c in self.calls if c.method == method and c.status == 200]

    def sent_texts(self, chat_id: int | None = None) -> list[str]:
        return [
            p["text"]
            for p in self.requests("sendMessage")
            if chat_id is None or p["chat_id"] == chat_id
        ]

    def uploads(self, method: str) -> list[tuple[int, Upload, str | None]]:
        """For every delivered ``sendPhoto``/``sendDocument``: (chat, the file, caption)."""
        field = {"sendPhoto": "photo", "sendDocument": "document"}[method]
        return [(p["chat_id"], p[field], p.get("caption")) for p in self.requests(method)]

    def keyboards(self) -> list[list[list[tuple[str, str]]] | None]:
        """For every delivered sendMessage: its inline keyboard as rows of (label, data)."""
        out: list[list[list[tuple[str, str]]] | None] = []
        for p in self.requests("sendMessage"):
            markup = p.get("reply_markup")
            if markup is None:
                out.append(None)
                continue
            out.append(
                [
                    [(b["text"], b["callback_data"]) for b in row]
                    for row in markup["inline_keyboard"]
                ]
            )
        return out

    # -- the API -------------------------------------------------------------------------

    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        if request.match_info["token"] != self.token:
            return await self._answer(method, params, _error(401, "Unauthorized"))
        gate = self.gates.get(method)
        if gate is not None:
            await gate.wait()
        failures = self._failures.get(method)
        if failures:
            failure = failures.pop(0)
            return await self._answer(method, params, _failure_response(failure))
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return await self._answer(method, params, _error(404, "Not Found"))
        if method == "getUpdates":
            response = await handler(params)  # may wait: record it when it returns
        else:
            response = handler(params)
        return await self._answer(method, params, response)

    async def _answer(
        self, method: str, params: dict[str, Any], response: web.Response
    ) -> web.Response:
        result = None
        if response.status == 200 and response.content_type == "application/json":
            assert response.text is not None
            result = json.loads(response.text)["result"]
        async with self._changed:
            self.calls.append(Call(method, params, response.status, result))
            self._changed.notify_all()
        return response

    async def _file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.downloads.append(path)
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        for file_path, content in self._files.values():
            if file_path == path:
                return web.Response(body=content, content_type="application/octet-stream")
        return web.Response(status=404, text="Not Found")

    def _bot_user(self) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "码上议", "username": self.username}

    def _api_getMe(self, params: dict[str, Any]) -> web.Response:
        return _ok(
            self._bot_user()
            | {
                "can_join_groups": False,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        )

    def _chat_error(self, chat_id: Any) -> web.Response | None:
        if not isinstance(chat_id, int) or chat_id in self.missing_chats:
            return _error(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        return None

    def _over_limit(self, chat_id: int, paid: bool) -> web.Response | None:
        limits = self.limits
        if limits is None:
            return None
        now = limits.time() * limits.speed  # in the API's seconds
        overall = "paid" if paid else "all"
        if overall not in self._buckets:
            rate = limits.paid_rate if paid else limits.rate
            size = limits.paid_rate if paid else limits.burst
            self._buckets[overall] = _Bucket(rate, size, now)
        if chat_id not in self._buckets:
            self._buckets[chat_id] = _Bucket(limits.chat_rate, limits.chat_burst, now)
        shared, mine = self._buckets[overall], self._buckets[chat_id]
        # Refill both first, take only if both have a token (a refused call costs nothing).
        wait = max(shared.take(now), 0.0)
        if wait == 0:
            wait = mine.take(now)
            if wait > 0:
                shared.tokens += 1  # not sent: give the shared token back
        if wait == 0:
            return None
        self.limited.append(chat_id)
        retry_after = max(1, math.ceil(wait))
        return _error(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    def _api_sendMessage(self, params: dict[str, Any]) -> web.Response:
        chat_id = params.get("chat_id")
        problem = self._chat_error(chat_id) or _text_error(params.get("text"))
        problem = problem or _markup_error(params.get("reply_markup"))
        if problem:
            return problem
        assert isinstance(chat_id, int)
        limited = self._over_limit(chat_id, bool(params.get("allow_paid_broadcast")))
        if limited:
            return limited
        assert isinstance(chat_id, int)
        self._next_message_id += 1
        message_id = self._next_message_id
        markup = params.get("reply_markup")
        self._messages[(chat_id, message_id)] = _Message(chat_id, params["text"], markup)
        result: dict[str, Any] = {
            "message_id": message_id,
            "from": self._bot_user(),
            "chat": {"id": chat_id, "first_name": "Resident", "type": "private"},
            "date": DATE,
            "text": params["text"],
        }
        if markup:
            result["reply_markup"] = markup
        return _ok(result)

    def _api_sendPhoto(self, params: dict[str, Any]) -> web.Response:
        return self._send_file(params, "photo")

    def _api_sendDocument(self, params: dict[str, Any]) -> web.Response:
        return self._send_file(params, "document")

    def _send_file(self, params: dict[str, Any], field: str) -> web.Response:
        chat_id = params.get("chat_id")
        problem = self._chat_error(chat_id)
        if problem:
            return problem
        upload = params.get(field)
        if not isinstance(upload, Upload) or not upload.content:
            return _error(400, f"Bad Request: there is no {field} in the request")
        assert isinstance(chat_id, int)
        limited = self._over_limit(chat_id, False)
        if limited:
            return limited
        self._next_message_id += 1
        unique = f"f{self._next_message_id}"
        result: dict[str, Any] = {
            "message_id": self._next_message_id,
            "from": self._bot_user(),
            "chat": {"id": chat_id, "first_name": "Resident", "type": "private"},
            "date": DATE,
        }
        if field == "photo":
            result["photo"] = [
                {"file_id": unique, "file_unique_id": unique, "width": 90, "height": 128}
            ]
        else:
            result["document"] = {
                "file_id": unique,
                "file_unique_id": unique,
                "file_name": upload.filename,
                "mime_type": upload.content_type,
                "file_size": len(upload.content),
            }
        if params.get("caption"):
            result["caption"] = params["caption"]
        return _ok(result)

    def _api_answerCallbackQuery(self, params: dict[str, Any]) -> web.Response:
        if not params.get("callback_query_id"):
            return _error(400, "Bad Request: query is too old and response timeout expired")
        return _ok(True)

    def _api_editMessageText(self, params: dict[str, Any]) -> web.Response:
        chat_id, message_id = params.get("chat_id"), params.get("message_id")
        problem = self._chat_error(chat_id) or _text_error(params.get("text"))
        if problem:
            return problem
        assert isinstance(chat_id, int) and isinstance(message_id, int)
        markup = params.get("reply_markup")  # absent: the keyboard is removed
        old = self._messages.get((chat_id, message_id))
        if old is not None and old.text == params["text"] and old.reply_markup == markup:
            return _error(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        # A message the fake did not send itself (made up by a test's update) is accepted.
        self._messages[(chat_id, message_id)] = _Message(chat_id, params["text"], markup)
        result: dict[str, Any] = {
            "message_id": message_id,
            "from": self._bot_user(),
            "chat": {"id": chat_id, "type": "private"},
            "date": DATE,
            "edit_date": DATE + 1,
            "text": params["text"],
        }
        if markup:
            result["reply_markup"] = markup
        return _ok(result)

    def _api_getFile(self, params: dict[str, Any]) -> web.Response:
        file_id = params.get("file_id", "")
        if file_id not in self._files:
            return _error(400, "Bad Request: invalid file_id")
        path, content = self._files[file_id]
        return _ok(
            {
                "file_id": file_id,
                "file_unique_id": f"u-{file_id}"[:32],
                "file_size": len(content),
                "file_path": path,
            }
        )

    def _api_setWebhook(self, params: dict[str, Any]) -> web.Response:
        url = params.get("url", "")
        if url and not url.startswith("https://"):
            return _error(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        self.webhook = params if url else None
        return _ok(True)

    def _api_deleteWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook = None
        return _ok(True)

    def _api_getWebhookInfo(self, params: dict[str, Any]) -> web.Response:
        info = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        if self.webhook:
            info["url"] = self.webhook["url"]
            info["allowed_updates"] = self.webhook.get("allowed_updates", [])
        return _ok(info)

    async def _api_getUpdates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook:
            return _error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset") or 0
        async with self._changed:
            # Confirming an offset forgets earlier updates, as the real server does.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if not self._updates and params.get("timeout"):
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._updates) or self._released),
                        params["timeout"],
                    )
                except TimeoutError:
                    pass
            return _ok(list(self._updates))


async def _params(request: web.Request) -> dict[str, Any]:
    raw: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        raw |= await request.json()
        return raw
    if request.can_read_body:
        form = await request.post()
        files = {
            k: Upload(v.filename, v.content_type, v.file.read())
            for k, v in form.items()
            if isinstance(v, web.FileField)
        }
        raw |= {k: v for k, v in form.items() if isinstance(v, str)}
        for name, value in list(raw.items()):  # attach://<field>: the file sent under it
            if isinstance(value, str) and value.startswith("attach://"):
                raw[name] = files.get(value.removeprefix("attach://"), value)
        raw |= {k: v for k, v in files.items() if k not in raw}
    return {k: _typed(k, v) for k, v in raw.items()}


def _typed(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in _JSON_PARAMS:
        return json.loads(value)
    if name in _INT_PARAMS or (name == "chat_id" and value.lstrip("-").isdigit()):
        return int(value)
    if name in _BOOL_PARAMS:
        return value.lower() == "true"
    return value


def _text_error(text: Any) -> web.Response | None:
    if not isinstance(text, str) or not text.strip():
        return _error(400, "Bad Request: message text is empty")
    if len(text.encode("utf-16-le")) // 2 > TEXT_LIMIT:
        return _error(400, "Bad Request: message is too long")
    return None


def _markup_error(markup: Any) -> web.Response | None:
    if markup is None:
        return None
    for row in markup.get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT:
                return _error(400, "Bad Request: BUTTON_DATA_INVALID")
    return None


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)


def _failure_response(failure: _Failure) -> web.Response:
    if failure.html:  # what a proxy in front of the API answers when the API is down
        return web.Response(
            status=failure.status,
            text=f"<html><head><title>{failure.status} {failure.description}</title></head>"
            f"<body><center><h1>{failure.status} {failure.description}</h1></center></body>"
            "</html>",
            content_type="text/html",
        )
    return _error(failure.status, failure.description, failure.retry_after)
