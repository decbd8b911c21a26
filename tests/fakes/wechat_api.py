"""A fake WeChat API (api.weixin.qq.com) on loopback: it answers like WeChat and records
every request, so tests can check what the service sent.

Tokens: ``stable_token`` issues TOKEN-1, TOKEN-2…; a call with an unknown or invalidated
token gets errcode 40001 as on WeChat. ``script(path, …)`` queues special answers (an
errcode, a 5xx, a dropped connection) for the next calls to one endpoint.

Temporary media: ``media/upload`` takes a multipart field ``media`` (an image must be a
PNG or JPEG, as WeChat checks) and answers a fresh media_id; the upload is kept in
``uploaded`` and a customer-service image message must name one of them (else 40007).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.test_utils import TestServer

STABLE_TOKEN = "cgi-bin/stable_token"
CUSTOM_SEND = "cgi-bin/message/custom/send"
#: Longer customer-service texts are refused with 45002 (reported as ~2,048 bytes).
TEXT_BYTES_REFUSED = 2048
TEMPLATE_SEND = "cgi-bin/message/template/send"
#: Subscription notifications (订阅通知); ``script(SUBSCRIBE_SEND, errcode=43101)`` and the
#: like answer with WeChat's errcodes (43101 no consent, 45009 daily quota).
SUBSCRIBE_SEND = "cgi-bin/message/subscribe/bizsend"
MEDIA_GET = "cgi-bin/media/get"
#: The JS-SDK ticket (``type=jsapi``): answers ``FakeWeChatAPI.jsapi_ticket``.
TICKET = "cgi-bin/ticket/getticket"
#: The ticket of WeChat's JS-SDK documentation (附录1, its signature example).
DOC_TICKET = (
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
)
MEDIA_UPLOAD = "cgi-bin/media/upload"
QRCODE_CREATE = "cgi-bin/qrcode/create"
#: Web authorization (网页授权): the authorize page (open.weixin.qq.com in life) and the code
#: exchange (api.weixin.qq.com); both served here.
OAUTH_AUTHORIZE = "connect/oauth2/authorize"
OAUTH_TOKEN = "sns/oauth2/access_token"
#: 网络检测: WeChat's servers resolve and ping the account's server URL (here: loopback).
CALLBACK_CHECK = "cgi-bin/callback/check"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the leading slash, e.g. "cgi-bin/message/custom/send"
    query: dict[str, str]
    json: Any  # the decoded body, or None


@dataclass(frozen=True)
class Upload:
    """A file sent to ``media/upload``."""

    kind: str  # the query's type: image, voice, video, thumb
    filename: str
    content_type: str
    content: bytes


@dataclass
class Answer:
    status: int = 200
    body: dict[str, Any] | None = None
    disconnect: bool = False  # drop the connection without answering


@dataclass
class FakeWeChatAPI:
    app_id: str = "wx0000000000000001"
    app_secret: str = "s3cret"
    expires_in: int = 7200
    jsapi_ticket: str = DOC_TICKET
    requests: list[Request] = field(default_factory=list)
    #: media_id → (content, content type) for media/get
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    #: media_id → what was uploaded to media/upload under it
    uploaded: dict[str, Upload] = field(default_factory=dict)
    _valid: set[str] = field(default_factory=set)
    _script: dict[str, list[Answer]] = field(default_factory=dict)
    _tokens: itertools.count = field(default_factory=lambda: itertools.count(1))
    _msgids: itertools.count = field(default_factory=lambda: itertools.count(200000001))
    #: The WeChat user whose browser opens the authorize page (None: nobody is signed in,
    #: the page answers as WeChat does outside its own browser).
    browser_openid: str | None = None
    #: Web authorization codes not yet exchanged: code → openid (each works once).
    _codes: dict[str, str] = field(default_factory=dict)
    _server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self.base_url

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/"))

    # -- steering ------------------------------------------------------------------------

    def script(
        self,
        path: str,
        *,
        errcode: int | None = None,
        errmsg: str = "scripted",
        status: int = 200,
        disconnect: bool = False,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls to ``path`` get this answer instead of the normal one."""
        body = {"errcode": errcode, "errmsg": errmsg} if errcode is not None else None
        answer = Answer(status=status, body=body, disconnect=disconnect)
        self._script.setdefault(path, []).extend([answer] * times)

    def invalidate_tokens(self) -> None:
        """As when another worker force-refreshed: every token issued so far stops working."""
        self._valid.clear()

    def calls(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    # -- serving -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body: Any
        if request.content_type == "multipart/form-data":
            form = await request.post()
            kind = request.query.get("type", "")
            body = {
                key: Upload(kind, v.filename, v.content_type, v.file.read())
                for key, v in form.items()
                if isinstance(v, web.FileField)
            }
        else:
            raw = await request.read()
            body = json.loads(raw.decode("utf-8")) if raw else None
        self.requests.append(Request(request.method, path, dict(request.query), body))
        queued = self._script.get(path)
        if queued:
            answer = queued.pop(0)
            if answer.disconnect:
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            if answer.status >= 500:
                return web.Response(status=answer.status, text="upstream error")
            return _json(answer.body or {"errcode": 0, "errmsg": "ok"}, answer.status)
        if path == STABLE_TOKEN:
            return self._stable_token(body or {})
        if path == OAUTH_AUTHORIZE:
            return self._authorize(request.query)
        if path == OAUTH_TOKEN:
            return self._oauth_token(request.query)
        if request.query.get("access_token") not in self._valid:
            return _json(
                {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
            )
        if path == TICKET:
            if request.query.get("type") != "jsapi":
                return _json({"errcode": 40097, "errmsg": "invalid args"})
            return _json(
                {"errcode": 0, "errmsg": "ok", "ticket": self.jsapi_ticket, "expires_in": 7200}
            )
        if path == MEDIA_UPLOAD:
            return self._upload(body or {})
        if path == CUSTOM_SEND:
            if (body or {}).get("msgtype") == "image":
                if body["image"].get("media_id") not in self.uploaded:
                    return _json({"errcode": 40007, "errmsg": "invalid media_id"})
                return _json({"errcode": 0, "errmsg": "ok"})
            if len(_shown_text(body or {}).encode()) > TEXT_BYTES_REFUSED:
                return _json({"errcode": 45002, "errmsg": "content size out of limit"})
            return _json({"errcode": 0, "errmsg": "ok"})
        if path in (TEMPLATE_SEND, SUBSCRIBE_SEND):
            return _json({"errcode": 0, "errmsg": "ok", "msgid": next(self._msgids)})
        if path == QRCODE_CREATE:
            return self._qrcode(body or {})
        if path == CALLBACK_CHECK:
            dns = [{"ip": "127.0.0.1", "real_operator": "UNICOM"}]
            ping = [{"ip": "127.0.0.1", "from_operator": "UNICOM", "package_loss": "0%"}]
            return _json({"dns": dns, "ping": ping})
        if path == MEDIA_GET:
            found = self.media.get(request.query.get("media_id", ""))
            if found is None:
                # WeChat answers errors of media/get as JSON labelled text/plain.
                return web.Response(
                    text=json.dumps({"errcode": 40007, "errmsg": "invalid media_id"}),
                    content_type="text/plain",
                )
            content, content_type = found
            return web.Response(body=content, content_type=content_type)
        return _json({"errcode": 48001, "errmsg": "api unauthorized"})

    def _upload(self, body: dict[str, Any]) -> web.Response:
        upload = body.get("media")
        if not isinstance(upload, Upload) or not upload.content:
            return _json({"errcode": 41005, "errmsg": "media data missing"})
        if upload.kind not in ("image", "voice", "video", "thumb"):
            return _json({"errcode": 40004, "errmsg": "invalid media type"})
        if upload.kind == "image" and not upload.content.startswith(
            (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
        ):
            return _json({"errcode": 40005, "errmsg": "invalid file type"})
        media_id = f"MEDIA-{next(self._msgids)}"
        self.uploaded[media_id] = upload
        return _json({"type": upload.kind, "media_id": media_id, "created_at": 1772416800})

    def _stable_token(self, body: dict[str, Any]) -> web.Response:
        if body.get("grant_type") != "client_credential" or body.get("appid") != self.app_id:
            return _json({"errcode": 40013, "errmsg": "invalid appid"})
        if body.get("secret") != self.app_secret:
            return _json({"errcode": 40125, "errmsg": "invalid appsecret"})
        token = f"TOKEN-{next(self._tokens)}"
        self._valid.add(token)
        return _json({"access_token": token, "expires_in": self.expires_in})

    def _authorize(self, query: Any) -> web.Response:
        """WeChat's authorize page with snsapi_base: silent, straight back to redirect_uri
        with a fresh code and the caller's state."""
        if query.get("appid") != self.app_id:
            return web.Response(status=200, text="参数错误: appid")
        if query.get("response_type") != "code" or query.get("scope") != "snsapi_base":
            return web.Response(status=200, text="参数错误: scope")
        if self.browser_openid is None:
            return web.Response(status=200, text="请在微信客户端打开链接")
        code = f"CODE{next(self._tokens)}"
        self._codes[code] = self.browser_openid
        target = query.get("redirect_uri", "")
        sep = "&" if "?" in target else "?"
        location = f"{target}{sep}{urlencode({'code': code, 'state': query.get('state', '')})}"
        raise web.HTTPFound(location)

    def _oauth_token(self, query: Any) -> web.Response:
        if query.get("appid") != self.app_id or query.get("secret") != self.app_secret:
            return _json({"errcode": 40125, "errmsg": "invalid appsecret"})
        if query.get("grant_type") != "authorization_code":
            return _json({"errcode": 40002, "errmsg": "invalid grant_type"})
        openid = self._codes.pop(query.get("code", ""), None)
        if openid is None:  # unknown, or used already: WeChat's codes work once
            return _json({"errcode": 40029, "errmsg": "invalid code"})
        return _json(
            {
                "access_token": f"WEB-{next(self._tokens)}",
                "expires_in": 7200,
                "refresh_token": "REFRESH",
                "openid": openid,
                "scope": "snsapi_base",
            }
        )

    def _qrcode(self, body: dict[str, Any]) -> web.Response:
        scene = body.get("action_info", {}).get("scene", {}).get("scene_str", "")
        answer: dict[str, Any] = {
            "ticket": f"gQH47joAAAAAAAAAASxodHRwOi8v{scene}",
            "url": f"http://weixin.qq.com/q/{scene}",
        }
        if body.get("action_name") == "QR_STR_SCENE":
            answer["expire_seconds"] = body.get("expire_seconds", 30)
        return _json(answer)


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    # WeChat sends JSON with UTF-8 Chinese as is; its Content-Type varies (often text/plain).
    return web.Response(
        status=status, text=json.dumps(body, ensure_ascii=False), content_type="application/json"
    )


def _shown_text(body: dict[str, Any]) -> str:
    """The text of a customer-service message: a text's content or a msgmenu's head."""
    if body.get("msgtype") == "msgmenu":
        return str(body.get("msgmenu", {}).get("head_content", ""))
    return str(body.get("text", {}).get("content", ""))
