"""The flood limit: at most ``limit`` messages handled per ``window`` seconds per chat identity.

Checked before any database work, so a flood costs others nothing. The first refused
message of a flood is answered ("slow down"); what a channel does with the rest is its own
business (dialogs/router.py: never acknowledged in silence).

Only handled messages count, each once: a platform's re-delivery of a message already let
through (WeChat's retries, same MsgId) is let through again without counting, so the
dialogs' receipts can give it its stored reply; a refused message does not count either.

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


class Throttle(Protocol):
    async def check(self, key: Key, message_id: str = "") -> Verdict:
        """``message_id``: the platform's id of the message ("" when it has none)."""
        ...


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
        #: Per person: (time, message id) of the messages let through, and when a flood was
        #: last told to slow down.
        self.seen: OrderedDict[Key, tuple[deque[tuple[float, str]], list[float]]] = OrderedDict()

    async def check(self, key: Key, message_id: str = "") -> Verdict:
        now = self.now()
        stamps, told = self.seen.pop(key) if key in self.seen else (deque(), [-math.inf])
        self.seen[key] = (stamps, told)
        if len(self.seen) > self.max_people:
            self.seen.popitem(last=False)
        while stamps and now - stamps[0][0] >= self.window:
            stamps.popleft()
        if message_id and any(seen == message_id for _, seen in stamps):
            return Verdict.ALLOW  # a re-delivery: the receipts answer it
        if len(stamps) < self.limit:
            stamps.append((now, message_id))
            return Verdict.ALLOW
        if now - told[0] < self.window:
            return Verdict.REFUSE_QUIETLY
        told[0] = now
        return Verdict.REFUSE_AND_SAY


#: A Redis that does not answer must not hold a message up for long (fail open instead).
REDIS_TIMEOUT = 0.5


def redis_client(url: str) -> Redis:
    """A client that gives up after ``REDIS_TIMEOUT`` seconds (redis-py waits forever)."""
    return Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)


#: The sliding window in one round trip. KEYS: the person's stamps (a sorted set of message
#: ids scored by time) and when they were last told. ARGV: now, window, limit, message id.
#: Returns 0 (allow), 1 (refuse and say) or 2 (refuse quietly).
_CHECK = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl = math.ceil(window) + 1
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return 0 end
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('EXPIRE', KEYS[1], ttl)
  return 0
end
local told = tonumber(redis.call('GET', KEYS[2]))
if told and now - told < window then return 2 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ttl)
return 1
"""
_VERDICTS = (Verdict.ALLOW, Verdict.REFUSE_AND_SAY, Verdict.REFUSE_QUIETLY)


class RedisThrottle:
    """The same sliding window, as a sorted set of message ids per person in Redis, checked
    and updated by one script (one round trip per message); the keys expire after a quiet
    window. If Redis cannot be reached the message is allowed (logged at most once a
    minute): a broken limiter must not shut residents out.
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
        self._script = client.register_script(_CHECK)
        self._warned_at = -math.inf

    async def check(self, key: Key, message_id: str = "") -> Verdict:
        name = f"{self.prefix}{key[0]}:{key[1]}"
        # A message without an id is never a re-delivery: give it a member of its own.
        member = message_id or f"~{secrets.token_hex(8)}"
        try:
            answer = await self._script(
                keys=[name, f"{name}:told"],
                args=[repr(self.now()), repr(self.window), self.limit, member],
            )
        except (RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at >= 60:
                self._warned_at = time.monotonic()
                log.warning("flood limit off: Redis unreachable (%s)", exc)
            return Verdict.ALLOW
        return _VERDICTS[int(answer)]
