"""Pushes on Telegram, through the real services, dispatcher and webhook against the fake
Bot API enforcing its limits, on an injected clock: the unfollow button that works, 30
messages a second and one a second per chat (LocalLimiter; RedisLimiter shared by two
"processes" when MASHANGYI_TEST_REDIS_URL is set), a 429 pausing the channel, a 403
marking the chat unreachable until the person writes again, paid broadcast as an option."""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from sqlmodel import col, select

from bot.config import load_config
from bot.services import Services, build_services
from bot.telegram import TelegramSender, close_outbound
from bot.telegram.limits import Limits, LocalLimiter, RedisLimiter
from bot.telegram.webhook import TELEGRAM
from bot.web import create_app
from notices.notify import tell
from storage.db import transaction
from storage.models import ChannelIdentity, OutboxMessage, Person, Topic
from storage.participation import Follow
from tests.fakes.telegram_api import TOKEN, FakeBotAPI, RateLimits
from tests.world import World, build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State
from workflow.payloads import FOLLOW_TOPIC, Setting

SECRET = "webhook-Secret_0123456789"
PAYLOADS = Path(__file__).parent / "payloads" / "telegram"
REDIS_ENV = "MASHANGYI_TEST_REDIS_URL"


def config_text(database_url: str, base_url: str, **extra: str) -> str:
    telegram = {"bot_token": TOKEN, "webhook_secret": SECRET, "base_url": base_url}
    lines = "\n".join(f'{k} = "{v}"' for k, v in telegram.items())
    more = "\n".join(f"{k} = {v}" for k, v in extra.items())
    return (
        f'[database]\nurl = "{database_url}"\n'
        '[server]\npublic_base_url = "https://bot.example.org"\n'
        f"[telegram]\n{lines}\n{more}\n"
        '[media]\ndir = "media"\n'
        "[dialogs]\nflood_messages = 1000\n"
    )


class Time:
    """The limiter's and the fake's time: the test's clock; sleeping moves it on."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.slept = 0.0

    def __call__(self) -> float:
        return self.clock.now().timestamp()

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds  # whole microseconds: the clock's resolution
        self.clock.advance(timedelta(microseconds=math.ceil(seconds * 1e6)))


@pytest.fixture
async def fake(clock: FixedClock) -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(limits=RateLimits(time=Time(clock))) as api:
        yield api


def make(
    database_url: str, fake: FakeBotAPI, tmp_path: Path, clock: FixedClock, **extra: str
) -> Services:
    path = tmp_path / "c.toml"
    path.write_text(config_text(database_url, fake.base_url, **extra), "utf-8")
    services = build_services(load_config(path, env={}), clock=clock)
    time = Time(clock)
    sender(services).limiter = LocalLimiter(Limits(), time=time, sleep=time.sleep, pause_time=time)
    return services


def sender(services: Services) -> TelegramSender:
    found = services.senders["telegram"]
    assert isinstance(found, TelegramSender)
    return found


@pytest.fixture
async def services(
    database_url: str, fake: FakeBotAPI, tmp_path: Path, engine: object, clock: FixedClock
) -> AsyncIterator[Services]:
    services = make(database_url, fake, tmp_path, clock)
    yield services
    await close_outbound(services)
    await services.close()


@pytest.fixture
async def world(services: Services, clock: FixedClock) -> World:
    world = await build_world(services.sessions, clock)
    world.lifecycle = services.lifecycle  # the services' listeners: notices and pushes
    return world


@pytest.fixture
async def client(services: Services) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    yield client
    await client.close()


async def followers(world: World, topic: Topic, chats: list[int]) -> dict[int, int]:
    """A Telegram person per chat id, following ``topic``: chat → person."""
    found = {}
    async with transaction(world.sessions) as session:
        for chat in chats:
            person = Person(display_name=f"居民{chat}")
            session.add(person)
            await session.flush()
            assert person.id is not None
            session.add(
                ChannelIdentity(person_id=person.id, channel="telegram", external_id=str(chat))
            )
            session.add(
                Follow(person_id=person.id, topic_id=topic.id, created_at=world.clock.now())
            )
            found[chat] = person.id
    return found


async def deliver(services: Services) -> int:
    await services.push_expander().run_once()
    return await services.dispatcher().drain()


async def outbox(services: Services, kind: str = "push.") -> list[OutboxMessage]:
    async with services.sessions() as session:
        rows = await session.exec(
            select(OutboxMessage)
            .where(col(OutboxMessage.kind).startswith(kind))
            .order_by(col(OutboxMessage.id))
        )
        return list(rows)


UPDATES = itertools.count(815390100)


def press(chat: int, data: str) -> dict[str, Any]:
    update = json.loads((PAYLOADS / "callback_query.json").read_text("utf-8"))
    update = copy.deepcopy(update)
    update["update_id"] = next(UPDATES)
    query = update["callback_query"]
    query["id"] = f"q{update['update_id']}"
    query["from"]["id"] = query["message"]["chat"]["id"] = chat
    query["data"] = data
    return update


def said(chat: int, text: str) -> dict[str, Any]:
    update = json.loads((PAYLOADS / "text.json").read_text("utf-8"))
    update["update_id"] = next(UPDATES)
    message = update["message"]
    message["from"]["id"] = message["chat"]["id"] = chat
    message["text"] = text
    return update


async def post(client: TestClient, update: dict[str, Any]) -> None:
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    response = await client.post("/telegram", data=json.dumps(update), headers=headers)
    assert response.status == 200
    await client.app[TELEGRAM].idle()


async def test_each_follower_gets_the_push_once_and_its_button_unfollows(
    services: Services, world: World, fake: FakeBotAPI, client: TestClient
) -> None:
    topic = await world.at(State.OUTCOME_APPROVED)
    await services.push_expander().run_once()  # its earlier pushes, to nobody yet
    chats = [2001, 2002, 2003]
    await followers(world, topic, chats)
    await world.walk(topic, ["publish_results"])
    await deliver(services)
    pushed = [p for p in fake.requests("sendMessage") if p["chat_id"] in chats]
    assert sorted(p["chat_id"] for p in pushed) == chats
    unfollow = FOLLOW_TOPIC.build(Setting(topic.id, False))
    for p in pushed:
        assert "协商结果已在“码上查情”公示" in p["text"]
        assert p["reply_markup"]["inline_keyboard"] == [
            [{"text": "取消关注", "callback_data": unfollow}]
        ]
        assert "allow_paid_broadcast" not in p  # off by default

    await post(client, press(2002, unfollow))
    assert "已取消关注" in fake.sent_texts(2002)[-1]
    await post(client, press(2002, unfollow))  # pressed again: a set, not a flip
    assert "已取消关注" in fake.sent_texts(2002)[-1]

    await world.apply(topic, "record_progress", world.person("V1", "convener"), note="已开工")
    await deliver(services)
    progress = [p for p in fake.requests("sendMessage") if "已开工" in p["text"]]
    assert sorted(p["chat_id"] for p in progress) == [2001, 2003]


async def test_a_push_to_many_keeps_30_a_second_and_meets_no_429(
    services: Services, world: World, fake: FakeBotAPI, clock: FixedClock
) -> None:
    topic = await world.at(State.APPROVED)
    await services.push_expander().run_once()  # its earlier pushes, to nobody yet
    chats = list(range(3001, 3091))  # 90 chats: three seconds' worth
    await followers(world, topic, chats)
    await world.walk(topic, ["publish"])
    start = clock.now()
    await deliver(services)
    assert fake.limited == []
    assert sorted(p["chat_id"] for p in fake.requests("sendMessage")) == chats
    elapsed = (clock.now() - start).total_seconds()
    # 90 at 30 a second: three seconds less the limiter's slack, never much faster.
    assert 2.8 <= elapsed <= 3.3


async def test_a_chats_messages_go_a_second_apart(
    services: Services, world: World, fake: FakeBotAPI, clock: FixedClock
) -> None:
    topic = await world.at(State.RESULTS_PUBLISHED)
    await services.push_expander().run_once()  # its earlier pushes, to nobody yet
    await followers(world, topic, [4001])
    convener = world.person("V1", "convener")
    for note in ("一", "二", "三", "四"):
        await world.apply(topic, "record_progress", convener, note=f"进展{note}")
    await services.push_expander().run_once()
    dispatcher = services.dispatcher()
    for _ in range(4):
        assert await dispatcher.run_once() == 1
        assert await dispatcher.run_once() == 0  # the chat's next one waits its second
        clock.advance(timedelta(seconds=1))
    texts = [t for t in fake.sent_texts(4001) if "进展" in t]
    assert [t.split("：")[1].split("\n")[0] for t in texts] == [
        "进展一",
        "进展二",
        "进展三",
        "进展四",
    ]
    assert fake.limited == []


async def test_a_429_pauses_every_send_of_the_channel_for_retry_after(
    services: Services, world: World, fake: FakeBotAPI, clock: FixedClock
) -> None:
    topic = await world.at(State.APPROVED)
    await services.push_expander().run_once()  # its earlier pushes, to nobody yet
    await followers(world, topic, [5001, 5002, 5003])
    await world.walk(topic, ["publish"])
    await services.push_expander().run_once()
    fake.fail("sendMessage", 429, retry_after=7)
    dispatcher = services.dispatcher()
    await dispatcher.run_once()
    first = (await outbox(services))[0]
    assert first.status == "pending" and first.attempts == 0  # a rate limit is no failure
    assert await sender(services).paused_for() == pytest.approx(7, abs=0.01)
    sent_before = len(fake.requests("sendMessage"))
    clock.advance(timedelta(seconds=6))
    assert await dispatcher.run_once() == 0  # paused: nothing claimed, nothing sent
    assert len(fake.requests("sendMessage")) == sent_before
    clock.advance(timedelta(seconds=1.1))
    await dispatcher.drain()
    assert sorted(p["chat_id"] for p in fake.requests("sendMessage")) == [5001, 5002, 5003]
    assert {r.status for r in await outbox(services)} == {"sent"}


async def test_a_blocked_chat_is_marked_unreachable_until_the_person_writes_again(
    services: Services, world: World, fake: FakeBotAPI, client: TestClient
) -> None:
    topic = await world.at(State.RESULTS_PUBLISHED)
    await services.push_expander().run_once()  # its earlier pushes, to nobody yet
    people = await followers(world, topic, [6001, 6002])
    fake.blocked.add(6001)
    convener = world.person("V1", "convener")
    await world.apply(topic, "record_progress", convener, note="第一次")
    await deliver(services)
    dead = [r for r in await outbox(services) if r.person_id == people[6001]]
    assert [(r.status, r.attempts) for r in dead] == [("dead", 1)]
    assert "403" in (dead[0].last_error or "") or "blocked" in (dead[0].last_error or "")
    async with services.sessions() as session:
        identity = (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == "6001"))
        ).one()
    assert identity.unreachable_at is not None
    calls = len(fake.calls)

    await world.apply(topic, "record_progress", convener, note="第二次")
    await deliver(services)
    second = [r for r in await outbox(services) if r.person_id == people[6001]][-1]
    assert second.status == "dead" and "unreachable" in (second.last_error or "")
    assert [c.params["chat_id"] for c in fake.calls[calls:] if c.method == "sendMessage"] == [
        6002
    ]  # nothing more was tried for the blocked chat

    fake.blocked.discard(6001)  # unblocked, and writes to the bot
    await post(client, said(6001, "你好"))
    async with services.sessions() as session:
        identity = (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == "6001"))
        ).one()
    assert identity.unreachable_at is None
    await world.apply(topic, "record_progress", convener, note="第三次")
    await deliver(services)
    assert any("第三次" in t for t in fake.sent_texts(6001))


async def test_paid_broadcast_sends_pushes_as_such_when_turned_on(
    database_url: str, fake: FakeBotAPI, tmp_path: Path, engine: object, clock: FixedClock
) -> None:
    services = make(database_url, fake, tmp_path, clock, allow_paid_broadcast="true")
    try:
        world = await build_world(services.sessions, clock)
        world.lifecycle = services.lifecycle
        topic = await world.at(State.APPROVED)
        await services.push_expander().run_once()  # its earlier pushes, to nobody yet
        await followers(world, topic, [7001])
        await world.walk(topic, ["publish"])
        async with transaction(services.sessions) as session:  # and an ordinary message
            identity = (
                await session.exec(
                    select(ChannelIdentity).where(ChannelIdentity.external_id == "7001")
                )
            ).one()
            await tell(
                session,
                identity.person_id,
                key="t1",
                kind="dialog.tell",
                text="你好",
                now=clock.now(),
            )
        await deliver(services)
        clock.advance(timedelta(seconds=1))  # one a second to this chat
        await services.dispatcher().drain()
        sent = {p["text"][:4]: p for p in fake.requests("sendMessage")}
        assert sent["您关注的"].get("allow_paid_broadcast") is True
        assert "allow_paid_broadcast" not in sent["你好"]
    finally:
        await close_outbound(services)
        await services.close()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"needs Redis ({REDIS_ENV})")
    client = Redis.from_url(url)
    yield client
    await client.aclose()


async def test_two_processes_share_the_rate_through_redis(redis: Redis, clock: FixedClock) -> None:
    prefix = f"mashangyi-test:{secrets.token_hex(6)}:"
    time = Time(clock)
    one, two = (RedisLimiter(redis, prefix=prefix, time=time, sleep=time.sleep) for _ in range(2))
    start = clock.now()
    for n in range(60):  # 60 chats, alternately through each "process"
        await (one if n % 2 else two).acquire(str(8000 + n))
    elapsed = (clock.now() - start).total_seconds()
    assert 59 / 30 - 0.11 <= elapsed <= 59 / 30 + 0.05  # one rate, not two
    await one.pause(3)  # a 429 seen by one: the other waits too
    assert await two.paused_for() == pytest.approx(3, abs=0.01)
    with pytest.raises(Exception, match="paused"):
        await two.acquire("8999")
    await redis.delete(*[k async for k in redis.scan_iter(f"{prefix}*")])
