"""WeChat under faults, through the webhook: nothing answered "received" is lost, no message
gets two replies, a retry is never eaten by the flood limit, and a slow or failing
database leaves every message either kept or unacknowledged (so WeChat delivers it again)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from bot.config import load_config
from bot.edge import is_transient
from bot.services import build_services
from bot.web import create_app
from bot.wechat.webhook import WEBHOOK
from dialogs.inbox import Inbox, spool_record
from dialogs.router import Handled
from dialogs.types import Inbound
from storage.db import make_engine, make_session_factory
from storage.models import DialogState, InboundReceipt, OutboxMessage
from storage.spool import Spool
from tests import test_wechat
from tests.test_wechat import (
    KEPT,
    SlowDialogs,
    Start,
    count,
    payload,
    reply_content,
    wait_for_rows,
)

# The WeChat harness's fixtures: the real app and services, a fake WeChat API.
fake, start = test_wechat.fake, test_wechat.start

TOO_FAST = "您发送得太快了，请稍等片刻再发。"
#: Nothing listens here: connections are refused at once.
DEAD_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/none"


class FailingOnce(SlowDialogs):
    """The real dialogs; the first message fails when released, as a step does that waited
    for a connection from an exhausted pool."""

    failed = False

    async def process(self, inbound: Inbound, **options: Any) -> Handled:
        if not self.failed:
            self.failed = True
            await self.release.wait()
            raise sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")
        return await self.inner.process(inbound, **options)


async def texts(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with make_session_factory(engine)() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all()  # type: ignore[arg-type]
    return [(row.idempotency_key, row.body["text"]) for row in rows]


async def post_text(h: Any, content: str, msg_id: str) -> tuple[int, str]:
    response = await h.post(payload("text", Content=content, MsgId=msg_id))
    body = await response.text()
    if response.status != 200 or body == "success":
        return response.status, body
    return response.status, reply_content(body)


async def test_retries_of_handled_messages_get_their_reply_whatever_the_flood_limit(
    start: Start, engine: AsyncEngine
) -> None:
    """WeChat delivers each message two or three times; only new messages count."""
    h = await start(flood=2)
    first = [await post_text(h, "菜单", "501") for _ in range(3)]
    second = [await post_text(h, "我的议题", "502") for _ in range(3)]
    assert len({*first}) == len({*second}) == 1  # each retry got its stored reply
    assert first[0][0] == second[0][0] == 200 and TOO_FAST not in (first[0][1], second[0][1])
    # The third new message within the window is refused, and says so on every delivery:
    # never an empty "success" for a message nobody handled.
    assert [await post_text(h, "你好", "503") for _ in range(2)] == [(200, TOO_FAST)] * 2
    assert await post_text(h, "在吗", "504") == (200, TOO_FAST)
    assert await count(engine, InboundReceipt) == 2


async def test_a_late_step_that_fails_is_kept_and_handled_later_in_order(
    start: Start, engine: AsyncEngine
) -> None:
    h = await start()
    failing = FailingOnce(h.dialogs)
    h.services.dialogs = failing  # type: ignore[assignment]
    h.client.app[WEBHOOK].reply_deadline = 0.01
    assert await post_text(h, "菜单", "601") == (200, KEPT)
    failing.release.set()  # the step fails: the message stays kept
    await asyncio.sleep(0.05)
    async with h.services.sessions() as session:
        [kept] = (await session.exec(select(InboundReceipt))).all()
    assert kept.status == "queued"
    # The person writes again before it is handled: the new message waits behind it.
    h.client.app[WEBHOOK].reply_deadline = 5.0
    assert await post_text(h, "我的议题", "602") == (200, KEPT)
    assert await count(engine, OutboxMessage) == 0
    assert await h.services.inbox().drain_once() == 2
    sent = await texts(engine)
    assert [key for key, _ in sent][:1] == ["wechat:late:601:0"]
    assert [key.split(":")[2] for key, _ in sent] == sorted(key.split(":")[2] for key, _ in sent)
    assert {key.split(":")[2] for key, _ in sent} == {"601", "602"}
    async with h.services.sessions() as session:
        receipts = (await session.exec(select(InboundReceipt))).all()
    assert {r.status for r in receipts} == {"done"}
    # Handled once: WeChat's retries of both now find them answered through the outbox.
    assert await post_text(h, "菜单", "601") == (200, "success")
    assert await post_text(h, "我的议题", "602") == (200, "success")
    assert await h.services.inbox().drain_once() == 0


async def test_a_redelivery_of_a_handled_message_gets_its_reply_while_a_newer_one_is_kept(
    start: Start, engine: AsyncEngine
) -> None:
    """WeChat re-delivers a message already handled (its answer was lost on the way) while
    the person's next message is kept, waiting: the re-delivery must get the stored reply,
    not "kept" — nothing would send its reply later (the drill's overload lost one so)."""
    h = await start()
    status, first = await post_text(h, "菜单", "1101")
    assert status == 200 and first != KEPT
    failing = FailingOnce(h.dialogs)
    h.services.dialogs = failing  # type: ignore[assignment]
    h.client.app[WEBHOOK].reply_deadline = 0.01
    assert await post_text(h, "我的议题", "1102") == (200, KEPT)
    failing.release.set()  # its step fails: it stays kept, to be handled from the queue
    await asyncio.sleep(0.05)
    h.client.app[WEBHOOK].reply_deadline = 5.0
    assert await post_text(h, "菜单", "1101") == (200, first)
    assert await count(engine, OutboxMessage) == 0


async def test_a_message_that_cannot_be_kept_is_not_acknowledged(
    start: Start, engine: AsyncEngine, tmp_path: Path
) -> None:
    h = await start()
    slow = SlowDialogs(h.dialogs)
    h.services.dialogs = slow  # type: ignore[assignment]
    h.services.priority_sessions = make_session_factory(make_engine(DEAD_DATABASE))
    (tmp_path / "full-disk").write_text("")  # nor can the spool write
    h.services.spool = Spool(tmp_path / "full-disk" / "spool")
    h.client.app[WEBHOOK].reply_deadline = 0.01
    status, _ = await post_text(h, "菜单", "701")
    assert status == 503  # WeChat delivers it again
    slow.release.set()  # the step finishes after all
    await wait_for_rows(engine, InboundReceipt)
    await asyncio.sleep(0.05)
    h.client.app[WEBHOOK].reply_deadline = 5.0
    status, text = await post_text(h, "菜单", "701")
    assert status == 200 and text not in ("success", KEPT)  # the stored reply, passively
    assert await count(engine, OutboxMessage) == 0  # and only that one


async def test_one_message_one_reply_when_the_retry_comes_after_the_deadline(
    start: Start, engine: AsyncEngine
) -> None:
    h = await start()
    slow = SlowDialogs(h.dialogs)
    h.services.dialogs = slow  # type: ignore[assignment]
    h.client.app[WEBHOOK].reply_deadline = 0.01
    assert await post_text(h, "菜单", "801") == (200, KEPT)
    # WeChat's retry while the step still runs joins it; still kept, still not replied.
    assert await post_text(h, "菜单", "801") == (200, KEPT)
    slow.release.set()
    await wait_for_rows(engine, OutboxMessage)
    h.client.app[WEBHOOK].reply_deadline = 5.0
    # Its reply went as a customer-service message: a third delivery must not carry it.
    assert await post_text(h, "菜单", "801") == (200, "success")
    assert len(await texts(engine)) == 1
    async with h.services.sessions() as session:
        assert len((await session.exec(select(DialogState))).all()) == 1


async def test_shutdown_lets_late_steps_finish_and_hands_the_rest_to_the_queue(
    start: Start, engine: AsyncEngine, database_url: str, clock: Any, tmp_path: Any
) -> None:
    h = await start()
    slow = SlowDialogs(h.dialogs)
    h.services.dialogs = slow  # type: ignore[assignment]
    hook = h.client.app[WEBHOOK]
    hook.reply_deadline = 0.01
    assert await post_text(h, "菜单", "901") == (200, KEPT)
    asyncio.get_running_loop().call_later(0.05, slow.release.set)
    await h.client.close()  # SIGTERM: the app shuts down
    assert [key for key, _ in await texts(engine)] == ["wechat:late:901:0"]

    # A step that does not finish in time is cancelled; its kept message survives it.
    second = await start()
    stuck = SlowDialogs(second.dialogs)
    second.services.dialogs = stuck  # type: ignore[assignment]
    second.client.app[WEBHOOK].reply_deadline = 0.01
    second.client.app[WEBHOOK].drain_seconds = 0.01
    assert await post_text(second, "我的议题", "902") == (200, KEPT)
    await second.client.close()
    config = tmp_path / "restart.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    restarted = build_services(load_config(config, env={}), clock=clock)
    try:
        assert await restarted.inbox().drain_once() == 1
    finally:
        await restarted.close()
    assert [key for key, _ in await texts(engine)] == ["wechat:late:901:0", "wechat:late:902:0"]


async def test_readyz_answers_within_a_second_when_the_database_stalls(
    tmp_path: Any, clock: Any
) -> None:
    """It accepts connections and never answers (a hung server, a full backlog)."""
    from aiohttp.test_utils import TestClient, TestServer

    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = tmp_path / "stalled.toml"
    config.write_text(
        f'[database]\nurl = "postgresql+asyncpg://postgres@127.0.0.1:{port}/x"\n', "utf-8"
    )
    services = build_services(load_config(config, env={}), clock=clock)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        response = await asyncio.wait_for(client.get("/readyz"), 3)
        assert response.status == 503
        assert (await response.json())["checks"]["database"].startswith("error")
    finally:
        await client.close()
        await services.close()
        server.close()
        for writer in held:
            writer.close()


class DatabaseDown(SlowDialogs):
    """Every step fails at once, as with connections refused."""

    async def process(self, inbound: Inbound, **options: Any) -> Handled:
        raise sa_exc.OperationalError("connect", {}, ConnectionRefusedError(111, "refused"))


async def test_while_the_database_is_down_a_message_is_kept_on_disk_and_handled_after(
    start: Start, engine: AsyncEngine
) -> None:
    h = await start()
    h.services.dialogs = DatabaseDown(h.dialogs)  # type: ignore[assignment]
    h.services.priority_sessions = make_session_factory(make_engine(DEAD_DATABASE))
    assert await post_text(h, "菜单", "1001") == (200, KEPT)  # kept: said so
    assert len(list(h.services.spool.directory.glob("*.jsonl"))) == 1
    assert await count(engine, InboundReceipt) == 0
    h.services.dialogs = h.dialogs  # type: ignore[assignment]  # the database is back
    assert await h.services.inbox().drain_once() == 1
    assert [key for key, _ in await texts(engine)] == ["wechat:late:1001:0"]
    assert list(h.services.spool.directory.iterdir()) == []
    assert await h.services.inbox().drain_once() == 0  # imported once


async def test_a_redelivery_while_the_database_is_away_gets_the_answer_already_given(
    start: Start, engine: AsyncEngine
) -> None:
    """Our answer to a handled message did not reach WeChat, and the database goes away
    before its retry: the retry must get the same answer, not "kept" (nothing would
    follow it: the message is handled, the drill's database outage lost one so)."""
    h = await start()
    status, first = await post_text(h, "菜单", "1021")
    assert status == 200 and first != KEPT
    h.services.dialogs = DatabaseDown(h.dialogs)  # type: ignore[assignment]
    h.services.priority_sessions = make_session_factory(make_engine(DEAD_DATABASE))
    assert await post_text(h, "菜单", "1021") == (200, first)
    assert not h.services.spool.directory.exists() or not any(h.services.spool.directory.iterdir())


async def test_messages_spooled_across_failed_imports_are_all_handled(
    start: Start, engine: AsyncEngine
) -> None:
    """The database stays away for several import rounds while more messages are spooled:
    a round that could not import its file must not have that file replaced by the next
    one's (the drill's database outage lost 60 acknowledged messages this way)."""
    h = await start()
    h.services.dialogs = DatabaseDown(h.dialogs)  # type: ignore[assignment]
    h.services.priority_sessions = make_session_factory(make_engine(DEAD_DATABASE))
    away = Inbox(
        make_session_factory(make_engine(DEAD_DATABASE)), h.dialogs, is_transient, h.services.spool
    )
    for msg_id in ("1011", "1012", "1013"):
        assert await post_text(h, f"菜单{msg_id}", msg_id) == (200, KEPT)
        with pytest.raises(OSError):
            await away.drain_once()  # the database is still away: nothing imported
    h.services.dialogs = h.dialogs  # type: ignore[assignment]  # the database is back
    assert await h.services.inbox().drain_once() == 3
    assert [key for key, _ in await texts(engine)] == [
        "wechat:late:1011:0",
        "wechat:late:1012:0",
        "wechat:late:1013:0",
    ]
    assert list(h.services.spool.directory.iterdir()) == []


class UnawareDialogs(SlowDialogs):
    """A step that commits a moment before it is told its message was answered from the
    spool (it never sees the mark)."""

    async def process(self, inbound: Inbound, **options: Any) -> Handled:
        await self.release.wait()
        return await self.inner.process(inbound)


async def test_a_step_that_committed_just_before_the_spooling_still_replies_once(
    start: Start, engine: AsyncEngine
) -> None:
    h = await start()
    unaware = UnawareDialogs(h.dialogs)
    h.services.dialogs = unaware  # type: ignore[assignment]
    h.services.priority_sessions = make_session_factory(make_engine(DEAD_DATABASE))
    h.client.app[WEBHOOK].reply_deadline = 0.01
    assert await post_text(h, "菜单", "1101") == (200, KEPT)
    unaware.release.set()
    await wait_for_rows(engine, OutboxMessage)
    await h.services.inbox().drain_once()  # the spooled copy: handled already
    await asyncio.sleep(0.05)
    assert [key for key, _ in await texts(engine)] == ["wechat:late:1101:0"]


async def test_a_spooled_message_a_redelivery_answered_gets_no_second_reply(
    start: Start, engine: AsyncEngine, clock: Any
) -> None:
    """Spooled by one process; WeChat's retry reached another once the database was back,
    which handled it and replied passively: importing the spool must not reply again."""
    h = await start()
    inbound = Inbound("wechat", "oRetried", "text", text="菜单", message_id="1201")
    spooled_at = clock.now()
    await h.services.spool.append(spool_record(inbound, spooled_at))
    clock.set(spooled_at + timedelta(seconds=5))
    assert (await h.dialogs.process(inbound)).replies  # the retry's passive reply
    await h.services.inbox().drain_once()
    assert await texts(engine) == []
    assert list(h.services.spool.directory.iterdir()) == []


async def test_a_redelivery_of_a_message_spooled_here_is_not_handled_twice(
    start: Start, engine: AsyncEngine
) -> None:
    h = await start()
    h.services.dialogs = DatabaseDown(h.dialogs)  # type: ignore[assignment]
    h.services.priority_sessions = make_session_factory(make_engine(DEAD_DATABASE))
    assert await post_text(h, "菜单", "1301") == (200, KEPT)
    h.services.dialogs = h.dialogs  # type: ignore[assignment]  # the database is back
    assert await post_text(h, "菜单", "1301") == (200, KEPT)  # still the spooled one
    assert await count(engine, InboundReceipt) == 0
    await h.services.inbox().drain_once()
    assert [key for key, _ in await texts(engine)] == ["wechat:late:1301:0"]


async def test_a_step_that_starts_after_its_message_was_spooled_replies_through_the_outbox(
    start: Start, engine: AsyncEngine, clock: Any
) -> None:
    """It waited (for the person's earlier message, for a connection) while the message was
    answered from the spool: when it runs, its replies must still reach the person, once."""
    h = await start()
    slow = SlowDialogs(h.dialogs)
    h.services.dialogs = slow  # type: ignore[assignment]
    h.services.priority_sessions = make_session_factory(make_engine(DEAD_DATABASE))
    h.client.app[WEBHOOK].reply_deadline = 0.01
    assert await post_text(h, "菜单", "1401") == (200, KEPT)
    clock.set(clock.now() + timedelta(seconds=2))  # it starts after the spooling
    slow.release.set()
    await wait_for_rows(engine, OutboxMessage)
    await h.services.inbox().drain_once()  # the spooled copy: already handled
    assert [key for key, _ in await texts(engine)] == ["wechat:late:1401:0"]
    again = await h.dialogs.process(
        Inbound("wechat", test_wechat.OPENID, "text", text="菜单", message_id="1401")
    )
    assert again.deferred  # another process's retry would not reply passively either


def exhausted_pool() -> Any:
    raise sa_exc.TimeoutError("QueuePool limit of size 2 overflow 0 reached")


async def test_a_busy_database_leaves_a_late_message_unacknowledged_not_spooled(
    start: Start, engine: AsyncEngine
) -> None:
    """Overload, not an outage: the step may still commit, so no copy goes to disk."""
    h = await start()
    slow = SlowDialogs(h.dialogs)
    h.services.dialogs = slow  # type: ignore[assignment]
    h.services.priority_sessions = exhausted_pool  # type: ignore[assignment]
    h.client.app[WEBHOOK].reply_deadline = 0.01
    status, _ = await post_text(h, "菜单", "1501")
    assert status == 503
    assert not h.services.spool.directory.exists() or not any(h.services.spool.directory.iterdir())
    slow.release.set()
    await wait_for_rows(engine, InboundReceipt)
    await asyncio.sleep(0.05)
    h.client.app[WEBHOOK].reply_deadline = 5.0
    status, text = await post_text(h, "菜单", "1501")  # WeChat's retry: the stored reply
    assert status == 200 and text not in ("success", KEPT)
    assert await count(engine, OutboxMessage) == 0
