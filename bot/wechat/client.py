"""A small async client for the few WeChat API endpoints we use (access token, messages,
QR codes, media).

Why not wechatpy's client: it is synchronous, and its token fetching and media download
ignore ``API_BASE_URL`` (they call the real host), so a proxy or a local fake would be
bypassed. Every request here goes to ``config.wechat.api_base_url``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from bot.config import WeChatSettings
from bot.media import MediaTooLarge
from workflow.clock import Clock

log = logging.getLogger(__name__)

#: The access token is dropped this long before WeChat says it expires.
TOKEN_MARGIN = timedelta(minutes=5)
#: errcodes meaning "this access token is no longer valid": fetch a new one, try once more.
TOKEN_INVALID = frozenset({40001, 40014, 42001})
#: errcodes of a customer-service message WeChat will not deliver now (45015: the person
#: has not written within 48 h; 45047: too many messages in this window): use a template.
OUT_OF_WINDOW = frozenset({45015, 45047})
#: errcodes worth retrying later: -1 "system busy", 45009 "daily API quota reached" (the
#: senders wait for the quota's next day rather than retrying it: bot/wechat/outbound.py).
TEMPORARY = frozenset({-1, 45009})
#: 45009: this endpoint's calls for today are used up (the quota resets at midnight).
DAILY_QUOTA = 45009
#: 43101: the person has not accepted this subscription template (or the one-time consent
#: is used up): a subscription notification cannot reach them.
NO_CONSENT = 43101
SUBSCRIBE_SEND = "cgi-bin/message/subscribe/bizsend"
#: The JS-SDK ticket the pages sign ``wx.config`` with.
TICKET = "cgi-bin/ticket/getticket"
#: Temporary media (kept by WeChat for three days), e.g. an image to send as a
#: customer-service message.
MEDIA_UPLOAD = "cgi-bin/media/upload"
#: WeChat refuses longer texts (45002; ~2,048 bytes reported, not documented): a text
#: message, a msgmenu head and a passive reply each stay under this many UTF-8 bytes.
TEXT_BYTES = 2000


class WeChatError(Exception):
    """Anything that kept a WeChat API call from succeeding."""


class WeChatUnavailable(WeChatError):
    """Network error, timeout, 5xx or an unreadable answer: worth trying again later."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class WeChatAPIError(WeChatError):
    """WeChat answered with a non-zero ``errcode``."""

    def __init__(self, errcode: int, errmsg: str, endpoint: str = "") -> None:
        super().__init__(f"{endpoint}: errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint


class WeChatTokenError(WeChatAPIError):
    """No access token (wrong secret, IP not on the whitelist…): a problem of this service,
    not of the message, so senders retry rather than give up on the message."""


@dataclass(frozen=True)
class QRCode:
    ticket: str
    url: str  # what the QR image must encode
    expire_seconds: int | None  # None: permanent


class WeChatAPI:
    """One official account. Safe to share between the sender and the fetcher."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        clock: Clock,
        *,
        base_url: str = "https://api.weixin.qq.com/",
        timeout: float = 10.0,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.clock = clock
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_until: datetime | None = None
        # One fetch at a time: concurrent senders share the token being fetched.
        self._token_lock = asyncio.Lock()

    @classmethod
    def from_config(cls, wechat: WeChatSettings, clock: Clock) -> WeChatAPI:
        secret = wechat.app_secret.get_secret_value()
        return cls(wechat.app_id, secret, clock, base_url=wechat.api_base_url)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- access token ----------------------------------------------------------------------

    async def access_token(self) -> str:
        """A cached token, fetched through ``stable_token`` when missing or nearly expired.

        ``stable_token`` (unlike ``token``) does not invalidate the token other workers hold.
        """
        async with self._token_lock:
            now = self.clock.now()
            if self._token and self._token_until and now < self._token_until:
                return self._token
            answer = await self._request(
                "POST",
                "cgi-bin/stable_token",
                body={
                    "grant_type": "client_credential",
                    "appid": self.app_id,
                    "secret": self.app_secret,
                },
            )
            errcode = int(answer.get("errcode") or 0)
            token = answer.get("access_token")
            if errcode or not isinstance(token, str) or not token:
                raise WeChatTokenError(
                    errcode or -1, str(answer.get("errmsg", "no access_token")), "stable_token"
                )
            lifetime = timedelta(seconds=int(answer.get("expires_in", 7200)))
            # Short-lived tokens (a test fake) keep half their life rather than none.
            margin = min(TOKEN_MARGIN, lifetime / 2)
            self._token, self._token_until = token, now + lifetime - margin
            return token

    def _forget_token(self, token: str) -> None:
        if self._token == token:
            self._token = self._token_until = None

    # -- endpoints -------------------------------------------------------------------------

    async def send_text(self, openid: str, text: str) -> None:
        await self.call(
            "cgi-bin/message/custom/send",
            {"touser": openid, "msgtype": "text", "text": {"content": text}},
        )

    async def send_menu(
        self, openid: str, head: str, options: Sequence[tuple[str, str]], tail: str = ""
    ) -> None:
        """A message with tappable options ``(id, label)``; a tap comes back as a text
        message carrying ``bizmsgmenuid`` = the id."""
        await self.call(
            "cgi-bin/message/custom/send",
            {
                "touser": openid,
                "msgtype": "msgmenu",
                "msgmenu": {
                    "head_content": head,
                    "list": [{"id": oid, "content": label} for oid, label in options],
                    "tail_content": tail,
                },
            },
        )

    async def send_image(self, openid: str, media_id: str) -> None:
        """A customer-service image message (inside the 48-hour window only)."""
        await self.call(
            "cgi-bin/message/custom/send",
            {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}},
        )

    async def upload_media(self, kind: str, filename: str, data: bytes, content_type: str) -> str:
        """Upload a temporary media file of ``kind`` (image, voice, video, thumb) as the
        multipart field ``media``; its ``media_id``."""
        for attempt in (1, 2):
            token = await self.access_token()
            form = aiohttp.FormData()
            form.add_field("media", data, filename=filename, content_type=content_type)
            _, raw = await self._fetch(
                "POST",
                MEDIA_UPLOAD,
                form=form,
                params={"access_token": token, "type": kind},
                limit=1024 * 1024,
            )
            answer = _json(raw, MEDIA_UPLOAD)
            errcode = int(answer.get("errcode") or 0)
            media_id = answer.get("media_id")
            if errcode == 0 and isinstance(media_id, str) and media_id:
                return media_id
            if errcode in TOKEN_INVALID and attempt == 1:
                self._forget_token(token)
                continue
            raise WeChatAPIError(errcode or -1, str(answer.get("errmsg", "no media_id")), "upload")
        raise AssertionError("unreachable")  # pragma: no cover

    async def send_template(
        self, openid: str, template_id: str, data: Mapping[str, str], url: str = ""
    ) -> None:
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
        }
        if url:
            body["url"] = url
        await self.call("cgi-bin/message/template/send", body)

    async def send_subscribe(
        self, openid: str, template_id: str, data: Mapping[str, str], page: str = ""
    ) -> None:
        """A subscription notification (订阅通知) the person consented to; never the mass
        send (群发), whose 4 a month are not for routine pushes."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
        }
        if page:
            body["page"] = page
        await self.call(SUBSCRIBE_SEND, body)

    async def create_qrcode(self, scene: str, expire_seconds: int | None = None) -> QRCode:
        """A parametric QR code: permanent (``QR_LIMIT_STR_SCENE``, capped at 100,000 per
        account) without ``expire_seconds``, temporary (``QR_STR_SCENE``, ≤ 30 days) with."""
        if not 1 <= len(scene) <= 64:
            raise ValueError("a scene string is 1-64 characters")
        body: dict[str, Any] = {"action_info": {"scene": {"scene_str": scene}}}
        if expire_seconds is None:
            body["action_name"] = "QR_LIMIT_STR_SCENE"
        else:
            body["action_name"] = "QR_STR_SCENE"
            body["expire_seconds"] = expire_seconds
        answer = await self.call("cgi-bin/qrcode/create", body)
        expires = answer.get("expire_seconds")
        return QRCode(
            ticket=str(answer["ticket"]),
            url=str(answer["url"]),
            expire_seconds=int(expires) if expires is not None else None,
        )

    async def get_media(self, media_id: str, max_bytes: int) -> tuple[bytes, str]:
        """Download a temporary media file (kept by WeChat for 3 days): content and type."""
        for attempt in (1, 2):
            token = await self.access_token()
            content_type, data = await self._fetch(
                "GET",
                "cgi-bin/media/get",
                params={"access_token": token, "media_id": media_id},
                limit=max_bytes,
            )
            # Errors come as a small JSON body (content type text/plain or application/json).
            if "json" in content_type or content_type.startswith("text/"):
                answer = _json(data, "media/get")
                errcode = int(answer.get("errcode") or 0)
                if errcode in TOKEN_INVALID and attempt == 1:
                    self._forget_token(token)
                    continue
                raise WeChatAPIError(errcode, str(answer.get("errmsg", "")), "media/get")
            return data, content_type or "application/octet-stream"
        raise AssertionError("unreachable")  # pragma: no cover

    async def jsapi_ticket(self) -> tuple[str, int]:
        """A new JS-SDK ticket (``jsapi_ticket``) and its lifetime in seconds. WeChat limits
        how often it may be fetched: callers keep it (bot/wechat/jssdk.py)."""
        answer = await self.call(TICKET, params={"type": "jsapi"})
        ticket = answer.get("ticket")
        if not isinstance(ticket, str) or not ticket:
            raise WeChatAPIError(-1, "no ticket in the answer", "getticket")
        return ticket, int(answer.get("expires_in", 7200))

    async def call(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST ``body`` (GET without one) to an endpoint taking ``access_token``; a stale
        token is replaced and the call made once more."""
        method = "POST" if body is not None else "GET"
        for attempt in (1, 2):
            token = await self.access_token()
            query = {**(params or {}), "access_token": token}
            answer = await self._request(method, path, body=body, params=query)
            errcode = int(answer.get("errcode") or 0)
            if errcode == 0:
                return answer
            if errcode in TOKEN_INVALID and attempt == 1:
                self._forget_token(token)
                continue
            raise WeChatAPIError(errcode, str(answer.get("errmsg", "")), path.rsplit("/", 2)[-1])
        raise AssertionError("unreachable")  # pragma: no cover

    # -- transport -------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        _, data = await self._fetch(method, path, body=body, params=params, limit=1024 * 1024)
        return _json(data, path)

    async def _fetch(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        form: aiohttp.FormData | None = None,
        params: Mapping[str, str] | None = None,
        limit: int,
    ) -> tuple[str, bytes]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        # ensure_ascii=False: WeChat shows \uXXXX escapes literally in some messages.
        payload: bytes | aiohttp.FormData | None = (
            json.dumps(body, ensure_ascii=False).encode() if body is not None else form
        )
        headers = {"Content-Type": "application/json; charset=utf-8"} if body is not None else None
        try:
            async with self._session.request(
                method, self.base_url + path, params=params, data=payload, headers=headers
            ) as response:
                if response.status >= 500 or response.status == 429:
                    raise WeChatUnavailable(f"{path}: HTTP {response.status}", response.status)
                if response.status >= 400:
                    raise WeChatAPIError(-response.status, f"HTTP {response.status}", path)
                if response.content_length is not None and response.content_length > limit:
                    raise MediaTooLarge(f"{path}: {response.content_length} bytes > {limit}")
                data = await response.content.read(limit + 1)
                if len(data) > limit:
                    raise MediaTooLarge(f"{path}: more than {limit} bytes")
                return response.content_type, data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WeChatUnavailable(f"{path}: {type(exc).__name__}: {exc}") from exc


def _json(data: bytes, path: str) -> dict[str, Any]:
    try:
        answer = json.loads(data)
    except ValueError:
        raise WeChatUnavailable(f"{path}: answer is not JSON") from None
    if not isinstance(answer, dict):
        raise WeChatUnavailable(f"{path}: answer is not a JSON object")
    return answer
