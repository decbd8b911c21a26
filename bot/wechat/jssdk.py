"""WeChat's JS-SDK on our pages: the ``wx.config`` a page inside WeChat needs for the open
tag ``<wx-open-subscribe>`` (the "结果公布时通知我" button, bot/web/topic_page.py).

``wx.config`` is signed with the account's ``jsapi_ticket``: sha1 over
``jsapi_ticket=…&noncestr=…&timestamp=…&url=…`` (the keys in that order, the page's URL
without its fragment). The ticket lives 7200 s and WeChat limits how often it may be
fetched, so it is kept as the access token is (bot/wechat/client.py: one fetch at a time in
a process, dropped a little before it expires), and with Redis configured it is shared by
every process, as the flood limit and the Telegram limits are: a process finding none
there fetches it and leaves it for the others until shortly before it expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.wechat.client import TOKEN_MARGIN, WeChatAPI
from workflow.clock import Clock

log = logging.getLogger("mashangyi.wechat")

#: The open tag the pages use.
OPEN_TAGS = ("wx-open-subscribe",)


def signature(ticket: str, nonce: str, timestamp: int, url: str) -> str:
    """The ``wx.config`` signature, as WeChat's JS-SDK documentation gives it."""
    url = url.split("#", 1)[0]
    plain = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(plain.encode()).hexdigest()


class JsapiTickets:
    """The account's ``jsapi_ticket``, kept until shortly before it expires; shared through
    ``redis`` when given."""

    def __init__(self, api: WeChatAPI, clock: Clock, redis: Redis | None = None) -> None:
        self.api = api
        self.clock = clock
        self.redis = redis
        self.key = f"mashangyi:wechat:{api.app_id}:jsapi_ticket"
        self._ticket: str | None = None
        self._until: datetime | None = None
        self._lock = asyncio.Lock()

    async def ticket(self) -> str:
        async with self._lock:
            now = self.clock.now()
            if self._ticket and self._until and now < self._until:
                return self._ticket
            shared = await self._shared()
            if shared is not None:
                self._ticket, self._until = shared[0], now + shared[1]
                return shared[0]
            ticket, seconds = await self.api.jsapi_ticket()
            lifetime = timedelta(seconds=seconds)
            keep = lifetime - min(TOKEN_MARGIN, lifetime / 2)
            self._ticket, self._until = ticket, now + keep
            await self._share(ticket, keep)
            return ticket

    async def config(self, url: str) -> dict[str, Any]:
        """``wx.config``'s parameters for the page at ``url`` (its open tags, no other API)."""
        nonce = secrets.token_urlsafe(12)
        timestamp = int(self.clock.now().timestamp())
        return {
            "debug": False,
            "appId": self.api.app_id,
            "timestamp": timestamp,
            "nonceStr": nonce,
            "signature": signature(await self.ticket(), nonce, timestamp, url),
            "jsApiList": [],
            "openTagList": list(OPEN_TAGS),
        }

    async def _shared(self) -> tuple[str, timedelta] | None:
        """The ticket another process left in Redis, and how long it is good for."""
        if self.redis is None:
            return None
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.key)
                pipe.pttl(self.key)
                value, left = await pipe.execute()
        except RedisError:
            log.warning("wechat: jsapi_ticket not read from Redis", exc_info=True)
            return None
        if not value or not isinstance(left, int) or left <= 0:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return text, timedelta(milliseconds=left)

    async def _share(self, ticket: str, keep: timedelta) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.set(self.key, ticket, px=max(1, int(keep.total_seconds() * 1000)))
        except RedisError:  # this process keeps it; the others fetch their own
            log.warning("wechat: jsapi_ticket not shared through Redis", exc_info=True)
