"""The flood limit: at most ``limit`` messages per ``window`` seconds per chat identity.

Checked before any database work, so a flood costs others nothing. The first refused
message of a flood is answered once ("slow down"); the rest are dropped quietly.

``LocalThrottle`` counts in this process: enough for one ``serve`` process. With several
(``serve --workers``) each would allow the limit again, so ``RedisThrottle`` keeps the
count in Redis (``redis.url``), shared by all of them. Time is wall/monotonic, not the
injected clock: this guards the service, it is not a business rule.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (channel, user_ref)


class Verdict(Enum):
    ALLOW = "allow"
    REFUSE_AND_SAY = "refuse_and_say"  # the first refusal of a flood
    REFUSE_QUIETLY = "refuse_quietly"


def verdict(count: int, limit: int) -> Verdict:
    """``count``: messages in the window including this one."""
    if count <= limit:
        return Verdict.ALLOW
    return Verdict.REFUSE_AND_SAY if count == limit + 1 else Verdict.REFUSE_QUIETLY


class Throttle(Protocol):
    async def check(self, key: Key) -> Verdict: ...


class LocalThrottle:
    """A sliding window per person, in this process (at most ``max_people`` remembered)."""

    def __init__(
        self,
        limit: int,
        window: float,
        now: Callable[[], float] = time.monotonic,
        max_people: int = 100_000,
    ) -> None:
        self.limit, self.window, self.now = limit, window, now
        self.max_people = max_people
        self.seen: OrderedDict[Key, deque[float]] = OrderedDict()

    async def check(self, key: Key) -> Verdict:
        now = self.now()
        stamps = self.seen.pop(key, None) or deque()
        while stamps and now - stamps[0] >= self.window:
            stamps.popleft()
        stamps.append(now)
        self.seen[key] = stamps
        if len(self.seen) > self.max_people:
            self.seen.popitem(last=False)
        return verdict(len(stamps), self.limit)


#: A Redis that does not answer must not hold a message up for long (fail open instead).
REDIS_TIMEOUT = 0.5


def redis_client(url: str) -> Redis:
    """A client that gives up after ``REDIS_TIMEOUT`` seconds (redis-py waits forever)."""
    return Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)


class RedisThrottle:
    """The same sliding window, as a sorted set of timestamps per person in Redis.

    One MULTI round trip per message: drop stamps older than the window, add this one,
    count, and let the key expire after a quiet window. If Redis cannot be reached the
    message is allowed (logged at most once a minute): a broken limiter must not shut
    residents out.
    """

    def __init__(
        self,
        client: Redis,
        limit: int,
        window: float,
        now: Callable[[], float] = time.time,
        prefix: str = "mashangyi:flood:",
    ) -> None:
        self.client, self.limit, self.window, self.now = client, limit, window, now
        self.prefix = prefix
        self._warned_at = -math.inf

    async def check(self, key: Key) -> Verdict:
        now = self.now()
        name = f"{self.prefix}{key[0]}:{key[1]}"
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(name, "-inf", now - self.window)
                pipe.zadd(name, {f"{now!r}:{secrets.token_hex(4)}": now})
                pipe.zcard(name)
                pipe.expire(name, math.ceil(self.window) + 1)
                _, _, count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at >= 60:
                self._warned_at = time.monotonic()
                log.warning("flood limit off: Redis unreachable (%s)", exc)
            return Verdict.ALLOW
        return verdict(int(count), self.limit)
