"""The flood limit, in one process and shared through Redis by several.

The Redis tests talk to a real Redis: ``MASHANGYI_TEST_REDIS_URL`` (``.ci/run`` sets it;
without it they are skipped). Each test uses keys of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.config import load_config
from bot.services import build_services
from dialogs.throttle import (
    REDIS_TIMEOUT,
    LocalThrottle,
    RedisThrottle,
    Throttle,
    Verdict,
    redis_client,
)
from dialogs.types import Inbound
from storage.db import transaction
from tests.world import ROOMS
from workflow.clock import FixedClock
from workflow.rooms import import_rooms, parse_rooms_csv

REDIS_ENV = "MASHANGYI_TEST_REDIS_URL"
ALLOW, SAY, QUIET = Verdict.ALLOW, Verdict.REFUSE_AND_SAY, Verdict.REFUSE_QUIETLY


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"needs Redis ({REDIS_ENV})")
    return url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"mashangyi-test:{secrets.token_hex(6)}:"


Make = Callable[[int, float, Callable[[], float]], Throttle]


@pytest.fixture(params=["local", "redis"])
def make(request: pytest.FixtureRequest, prefix: str) -> Make:
    if request.param == "local":
        return lambda limit, window, now: LocalThrottle(limit, window, now=now)
    client = request.getfixturevalue("redis")
    return lambda limit, window, now: RedisThrottle(client, limit, window, now=now, prefix=prefix)


async def test_the_window_slides_and_a_flood_is_told_once(make: Make) -> None:
    now = [1000.0]
    throttle = make(3, 10.0, lambda: now[0])
    me, other = ("wechat", "me"), ("wechat", "other")
    assert [await throttle.check(me) for _ in range(6)] == [ALLOW, ALLOW, ALLOW, SAY, QUIET, QUIET]
    assert await throttle.check(other) is ALLOW  # nobody else is slowed
    now[0] += 9.9
    assert await throttle.check(me) is QUIET  # still inside the window of the last ones
    now[0] += 10.0
    assert await throttle.check(me) is ALLOW  # a quiet window later: welcome back


async def test_two_processes_share_one_limit(redis: Redis, prefix: str) -> None:
    """Each ``serve --workers`` process has its own throttle object; the count is shared."""
    first, second = (RedisThrottle(redis, 10, 10.0, prefix=prefix) for _ in range(2))
    key = ("telegram", "42")
    verdicts = [await (first if n % 2 else second).check(key) for n in range(12)]
    assert verdicts == [ALLOW] * 10 + [SAY, QUIET]
    assert 0 < await redis.ttl(f"{prefix}telegram:42") <= 11  # forgotten after a quiet window


async def test_unreachable_redis_lets_messages_through_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    throttle = RedisThrottle(client, 1, 10.0)
    with caplog.at_level(logging.WARNING):
        assert [await throttle.check(("wechat", "x")) for _ in range(3)] == [ALLOW] * 3
    await client.aclose()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # once a minute, not once a message
    assert warnings[0].startswith("flood limit off: Redis unreachable")


async def test_a_redis_that_does_not_answer_holds_nobody_up() -> None:
    """It accepts the connection and never replies (overloaded, half-dead)."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # kept open, never answered

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0")
    throttle = RedisThrottle(client, 1, 10.0)
    verdict = await asyncio.wait_for(throttle.check(("wechat", "x")), REDIS_TIMEOUT * 4)
    assert verdict is ALLOW and accepted
    await client.aclose()
    server.close()
    await server.wait_closed()


async def test_with_redis_configured_the_dialogs_count_there(
    database_url: str, engine, clock: FixedClock, tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n[redis]\nurl = "{redis_url}"\n'
        "[dialogs]\nflood_messages = 3\nflood_seconds = 60\n",
        "utf-8",
    )
    # Two service graphs on one database and one Redis: two serving processes.
    one, two = (build_services(load_config(config, env={}), clock=clock) for _ in range(2))
    async with transaction(one.sessions) as session:
        await import_rooms(session, parse_rooms_csv(ROOMS.encode()), clock.now())
    person = f"flood-{secrets.token_hex(4)}"
    answers = []
    for n in range(5):
        services = one if n % 2 else two
        inbound = Inbound("wechat", person, "text", text="刷屏", message_id=f"{person}-{n}")
        answers.append([r.text for r in await services.dialogs.handle(inbound)])
    await redis.delete(f"mashangyi:flood:wechat:{person}")
    for services in (one, two):
        await services.close()
    assert all(a and "太快" not in a[0] for a in answers[:3])
    assert answers[3:] == [["您发送得太快了，请稍等片刻再发。"]] * 2  # refused, never silently


async def test_a_redelivered_message_is_let_through_and_not_counted(make: Make) -> None:
    """WeChat retries a message with the same MsgId: the receipts answer it, the limit must
    neither refuse it nor count it again; refused messages do not count either."""
    now = [1000.0]
    throttle = make(2, 10.0, lambda: now[0])
    me = ("wechat", "me")
    assert [await throttle.check(me, "a") for _ in range(3)] == [ALLOW] * 3
    assert [await throttle.check(me, "b") for _ in range(3)] == [ALLOW] * 3
    assert await throttle.check(me, "c") is SAY
    assert await throttle.check(me, "a") is ALLOW  # still a re-delivery of a handled one
    assert await throttle.check(me, "c") is QUIET  # a refused one is not let in by retrying
    now[0] += 10.0
    assert await throttle.check(me, "c") is ALLOW  # the window has room again
