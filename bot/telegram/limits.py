"""The Bot API's sending limits, kept by every process together: about 30 messages a second
over all chats, one a second per chat, and a 429's ``retry_after`` pausing all sends.

The outbox (notices/outbox.py) already sends a chat's rows a second apart (its pace) and
obeys ``retry_after`` per row; what it cannot see is the rate over all chats of every
dispatcher at once, nor a pause one of them was told of. ``TelegramSender`` asks a limiter
before each call: ``LocalLimiter`` for one process, ``RedisLimiter`` (``[redis] url``) for
all of them, one script per call.

Both schedule sends by GCRA (the generic cell rate algorithm): a "theoretical arrival
time" per key (the whole bot, one chat) that moves one interval on per send; a send may go
when that time is at most ``burst`` ahead of now. That is strict spacing with a little
slack for the scheduling jitter of a waiting sender, never more than ``rate × burst + 1``
messages in any window beyond the rate. A wait longer than ``max_wait`` (a pause after a
429) is not slept through in the sender: it raises ``Paused``, the row goes back with that
``retry_after`` (not counted as an attempt), and the dispatcher claims no more rows of the
channel until the pause ends (``paused_for``).

Time is a function (``time``, seconds) and so is ``sleep``. The rate is a guard of the
service, kept in real time (``time.monotonic`` in one process, ``time.time`` shared through
Redis), as the flood limit is; a pause is the platform's "not before", kept on the
injected clock (``pause_time``) as the outbox keeps every ``retry_after``: a test moving
its clock past a pause sees sending resume. Tests may run both on their clock (``sleep``
then moves it); a benchmark can scale rates and pauses by ``speed``.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis


class Paused(Exception):
    """Sending must wait ``seconds`` (a pause after a 429, or a long queue)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"telegram sending paused for {seconds:.3f} s")
        self.seconds = seconds


@dataclass(frozen=True)
class Limits:
    #: Messages a second over all chats (Telegram: about 30).
    rate: float = 30.0
    #: Seconds between two messages to one chat (Telegram: 1).
    chat_interval: float = 1.0
    #: Messages a second for paid broadcast (``allow_paid_broadcast``; up to 1,000).
    paid_rate: float = 1000.0
    #: How far ahead of now a send may be scheduled (jitter slack), seconds.
    burst: float = 0.1
    #: Waits up to this long are slept through in the sender; longer ones raise Paused.
    max_wait: float = 2.0
    #: Time runs this many times faster (benchmarks): rates × speed, intervals ÷ speed.
    speed: float = 1.0

    @property
    def interval(self) -> float:
        return 1.0 / (self.rate * self.speed)

    @property
    def paid_interval(self) -> float:
        return 1.0 / (self.paid_rate * self.speed)

    @property
    def per_chat(self) -> float:
        return self.chat_interval / self.speed

    def scaled(self, seconds: float) -> float:
        """A platform's duration (retry_after) in this limiter's time."""
        return seconds / self.speed


Sleep = Callable[[float], Awaitable[None]]
#: Waits shorter than this are none: a clock of microseconds (a test's) could not move on.
_EPSILON = 1e-6


class Limiter(Protocol):
    limits: Limits

    async def acquire(self, chat: str, *, paid: bool = False) -> None:
        """Wait until a message to ``chat`` may go (and count it); raise Paused when that is
        more than ``max_wait`` away."""
        ...

    async def pause(self, seconds: float) -> None:
        """A 429 said: no sends for ``seconds`` (the platform's seconds)."""
        ...

    async def paused_for(self) -> float:
        """Seconds until sending may resume (0: not paused)."""
        ...


class _Waiting:
    """``acquire`` over a ``_reserve`` that answers how long to wait (0: reserved)."""

    limits: Limits
    time: Callable[[], float]
    sleep: Sleep

    async def _reserve(self, chat: str, paid: bool) -> float:
        raise NotImplementedError

    async def acquire(self, chat: str, *, paid: bool = False) -> None:
        while True:
            wait = await self._reserve(chat, paid)
            if wait <= _EPSILON:
                return
            if wait > self.limits.max_wait:
                raise Paused(wait)
            await self.sleep(wait)


class LocalLimiter(_Waiting):
    """The limits within one process."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        time: Callable[[], float] = _time.monotonic,
        sleep: Sleep = asyncio.sleep,
        pause_time: Callable[[], float] | None = None,
        max_chats: int = 100_000,
    ) -> None:
        self.limits, self.time, self.sleep = limits or Limits(), time, sleep
        self.pause_time = pause_time or time
        self._global = 0.0
        self._paid = 0.0
        self._paused_until = 0.0
        self._chats: OrderedDict[str, float] = OrderedDict()
        self._max_chats = max_chats

    async def _reserve(self, chat: str, paid: bool) -> float:
        paused = self._paused_until - self.pause_time()
        if paused > _EPSILON:
            return paused
        limits, now = self.limits, self.time()
        shared = max(self._paid if paid else self._global, now)
        mine = max(self._chats.get(chat, 0.0), now)
        wait = max(shared - now - limits.burst, mine - now)
        if wait > _EPSILON:
            return wait
        if paid:
            self._paid = shared + limits.paid_interval
        else:
            self._global = shared + limits.interval
        self._chats[chat] = mine + limits.per_chat
        self._chats.move_to_end(chat)
        while len(self._chats) > self._max_chats:  # long past: forgetting loses nothing
            self._chats.popitem(last=False)
        return 0.0

    async def pause(self, seconds: float) -> None:
        until = self.pause_time() + self.limits.scaled(seconds)
        self._paused_until = max(self._paused_until, until)

    async def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.pause_time())


#: One reservation. KEYS: the bot's (or paid) schedule, the chat's, the pause. ARGV: now,
#: interval, chat interval, burst (all seconds), now on the pause's clock. Returns the wait
#: in seconds (as a string: Redis turns Lua numbers into integers), "0" when reserved.
_RESERVE = """
local now = tonumber(ARGV[1])
local interval, per_chat, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local paused = tonumber(redis.call('GET', KEYS[3]) or '0') - tonumber(ARGV[5])
if paused > 0.000001 then return tostring(paused) end
local shared = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local mine = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now)
local wait = math.max(shared - now - burst, mine - now)
if wait > 0.000001 then return tostring(wait) end
redis.call('SET', KEYS[1], tostring(shared + interval), 'PX', 60000)
redis.call('SET', KEYS[2], tostring(mine + per_chat), 'PX', math.ceil(per_chat * 1000) + 60000)
return '0'
"""

#: KEYS: the pause. ARGV: until (seconds), ttl (ms). Only ever moves the pause later.
_PAUSE = """
local later = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if later > current then redis.call('SET', KEYS[1], tostring(later), 'PX', ARGV[2]) end
return 1
"""


class RedisLimiter(_Waiting):
    """The limits shared by every process using this Redis and ``prefix``."""

    def __init__(
        self,
        redis: Redis,
        limits: Limits | None = None,
        *,
        prefix: str = "mashangyi:telegram:",
        time: Callable[[], float] = _time.time,
        sleep: Sleep = asyncio.sleep,
        pause_time: Callable[[], float] | None = None,
    ) -> None:
        self.redis, self.limits, self.time, self.sleep = redis, limits or Limits(), time, sleep
        self.pause_time = pause_time or time
        self.prefix = prefix
        self._reserve_script = redis.register_script(_RESERVE)
        self._pause_script = redis.register_script(_PAUSE)

    async def _reserve(self, chat: str, paid: bool) -> float:
        limits = self.limits
        shared = f"{self.prefix}{'paid' if paid else 'all'}"
        answer = await self._reserve_script(
            keys=[shared, f"{self.prefix}chat:{chat}", f"{self.prefix}pause"],
            args=[
                repr(self.time()),
                repr(limits.paid_interval if paid else limits.interval),
                repr(limits.per_chat),
                repr(limits.burst),
                repr(self.pause_time()),
            ],
        )
        return float(answer)

    async def pause(self, seconds: float) -> None:
        scaled = self.limits.scaled(seconds)
        await self._pause_script(
            keys=[f"{self.prefix}pause"],
            args=[repr(self.pause_time() + scaled), int(scaled * 1000) + 1000],
        )

    async def paused_for(self) -> float:
        value = await self.redis.get(f"{self.prefix}pause")
        return max(0.0, float(value) - self.pause_time()) if value is not None else 0.0
