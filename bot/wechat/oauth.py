"""WeChat web authorization (网页授权) with ``snsapi_base``: silent, it gives only the
person's openid for our official account (PLATFORMS.md).

``authorize_url`` is where the browser is sent (``wechat.oauth_base_url``); WeChat sends it
back to ``redirect_uri`` with ``code`` and our ``state``; ``openid_for_code`` exchanges the
code at ``sns/oauth2/access_token`` (``wechat.api_base_url``). The access token that comes
with it is not kept: snsapi_base gives nothing more to ask for.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.config import WeChatSettings

TOKEN_PATH = "sns/oauth2/access_token"
AUTHORIZE_PATH = "connect/oauth2/authorize"
TIMEOUT = aiohttp.ClientTimeout(total=5)


class OAuthError(Exception):
    """WeChat did not give an openid for the code (``errcode``: WeChat's, or 0)."""

    def __init__(self, message: str, errcode: int = 0) -> None:
        super().__init__(message)
        self.errcode = errcode


def authorize_url(wechat: WeChatSettings, redirect_uri: str, state: str) -> str:
    query = urlencode(
        {
            "appid": wechat.app_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "snsapi_base",
            "state": state,
        }
    )
    # The parameters in this order and the fragment are what WeChat documents.
    return f"{wechat.oauth_base_url.rstrip('/')}/{AUTHORIZE_PATH}?{query}#wechat_redirect"


async def openid_for_code(wechat: WeChatSettings, code: str) -> str:
    if not code or len(code) > 128:
        raise OAuthError("no code")
    query = {
        "appid": wechat.app_id,
        "secret": wechat.app_secret.get_secret_value(),
        "code": code,
        "grant_type": "authorization_code",
    }
    url = f"{wechat.api_base_url.rstrip('/')}/{TOKEN_PATH}"
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
            http.get(url, params=query) as response,
        ):
            body: Any = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise OAuthError(f"WeChat's token endpoint: {type(exc).__name__}") from None
    if not isinstance(body, dict) or body.get("errcode"):
        errcode = body.get("errcode", 0) if isinstance(body, dict) else 0
        raise OAuthError(f"WeChat refused the code: {body!r}"[:300], int(errcode or 0))
    openid = body.get("openid")
    if not isinstance(openid, str) or not openid:
        raise OAuthError("no openid in WeChat's answer")
    return openid
