"""The Telegram channel, through HTTP: real Update JSON posted to ``/telegram`` of the real
app, a fake Bot API on loopback recording what the service sends, the injected clock."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, func, select
from telegram import Bot
from telegram.error import BadRequest

from bot.cli import main
from bot.config import ConfigError, load_config
from bot.edge import MAX_DEPTH, body_key, too_deep
from bot.media import MediaTooLarge
from bot.services import Services, build_services
from bot.telegram import (
    CHAT_INTERVAL,
    SECRET_HEADER,
    TelegramMediaFetcher,
    TelegramSender,
    close_outbound,
    file_base_url,
)
from bot.telegram.polling import poll
from bot.telegram.replies import REPLY_HOLD
from bot.telegram.webhook import TELEGRAM
from bot.web import create_app
from dialogs.conversation import say
from dialogs.router import Handled
from dialogs.throttle import LocalThrottle
from dialogs.types import Button, Inbound, Location, Media, Reply
from notices.message import OutboundMessage
from notices.outbox import PermanentFailure, TemporaryFailure, enqueue
from storage.db import make_engine, make_session_factory, transaction
from storage.models import (
    Attachment,
    CardMessage,
    ChannelIdentity,
    InboundFailure,
    InboundReceipt,
    OutboxMessage,
    Person,
    RoleGrant,
    Room,
    Topic,
)
from tests.fakes.telegram_api import TOKEN, FakeBotAPI
from tests.world import ROOMS
from workflow.clock import FixedClock
from workflow.rooms import import_rooms, parse_rooms_csv

SECRET = "webhook-Secret_0123456789"
PAYLOADS = Path(__file__).parent / "payloads" / "telegram"
#: Nothing listens here: connections are refused at once.
DEAD_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
USER = 1001  # the resident in the payloads (private chat id == user id)
NAME = "伟 李"  # PTB's full_name: first name, then last name


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.json").read_text("utf-8"))


def config_text(database_url: str, base_url: str, **telegram: str) -> str:
    settings = {"bot_token": TOKEN, "webhook_secret": SECRET, "base_url": base_url} | telegram
    lines = "\n".join(f'{key} = "{value}"' for key, value in settings.items())
    return (
        f'[database]\nurl = "{database_url}"\n'
        '[server]\npublic_base_url = "https://bot.example.org"\n'
        f"[telegram]\n{lines}\n"
        '[media]\ndir = "media"\n'
        # Tests type faster than people: the flood limit is the dialogs' business.
        "[dialogs]\nflood_messages = 1000\n"
    )


def make_services(path: Path, clock: FixedClock) -> Services:
    return build_services(load_config(path, env={}), clock=clock)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as api:
        yield api


@pytest.fixture
def config_path(database_url: str, fake: FakeBotAPI, tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(config_text(database_url, fake.base_url), "utf-8")
    return path


@pytest.fixture
async def services(config_path: Path, engine: object, clock: FixedClock) -> AsyncIterator[Services]:
    services = make_services(config_path, clock)
    async with transaction(services.sessions) as session:
        await import_rooms(session, parse_rooms_csv(ROOMS.encode()), clock.now())
    yield services
    await close_outbound(services)
    await services.close()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    yield client
    await client.close()


class RecordingDialogs:
    """Stands in for ``Dialogs``: records each Inbound, answers with fixed replies."""

    def __init__(self, *replies: Reply, error: Exception | None = None) -> None:
        self.inbounds: list[Inbound] = []
        self.replies = list(replies)
        self.error = error

    async def process(self, inbound: Inbound, **options: Any) -> Handled:
        self.inbounds.append(inbound)
        if self.error is not None:
            raise self.error
        return Handled(list(self.replies))


def stand_in(
    services: Services, *replies: Reply, error: Exception | None = None
) -> RecordingDialogs:
    dialogs = RecordingDialogs(*replies, error=error)
    services.dialogs = dialogs  # type: ignore[assignment]
    return dialogs


async def post(
    client: TestClient, update: Any, *, secret: str | None = SECRET, body: bytes | None = None
) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    if body is None:
        try:
            body = json.dumps(update, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate is no UTF-8: Telegram sends "\ud800"
            body = json.dumps(update).encode()
    data = body
    response = await client.post("/telegram", data=data, headers=headers)
    await response.read()
    # The webhook answers once the replies are in the outbox and sends them right after.
    await client.app[TELEGRAM].idle()
    return response.status


async def failures(services: Services) -> list[InboundFailure]:
    async with services.sessions() as session:
        return list(await session.exec(select(InboundFailure).order_by(col(InboundFailure.id))))


async def count(services: Services, model: type) -> int:
    async with services.sessions() as session:
        return (await session.exec(select(func.count()).select_from(model))).one()


async def outbox(services: Services) -> list[OutboxMessage]:
    async with services.sessions() as session:
        rows = await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))
        return list(rows)


# -- the door: secret, size, shape -------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1], SECRET.upper()])
async def test_a_missing_or_wrong_secret_is_refused_and_nothing_is_stored(
    client: TestClient, services: Services, fake: FakeBotAPI, secret: str | None
) -> None:
    assert await post(client, payload("start"), secret=secret) == 403
    for model in (Person, ChannelIdentity, InboundReceipt, OutboxMessage):
        assert await count(services, model) == 0
    assert fake.methods() == ["getMe"]  # only the start-up check


@pytest.mark.parametrize("raw", ["é".encode(), b"\xff\xfe" + SECRET.encode()])
async def test_a_secret_header_not_ascii_or_not_utf8_is_refused_not_a_crash(
    client: TestClient, services: Services, raw: bytes
) -> None:
    # Raw bytes on the wire: aiohttp's client sends only what encodes as UTF-8.
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    body = json.dumps(payload("start")).encode()
    writer.write(
        b"POST /telegram HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
        + SECRET_HEADER.encode()
        + b": "
        + raw
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.split()[1] == b"403"
    assert await count(services, InboundReceipt) == 0


async def test_the_right_secret_is_let_in(client: TestClient, services: Services) -> None:
    assert await post(client, payload("start")) == 200
    assert await count(services, InboundReceipt) == 1


@pytest.mark.parametrize(
    "body, status",
    [
        (b"{" + b" " * (1024 * 1024) + b"}", 413),
        (b'{"update_id": 1, "message": ', 400),
        (b"\xff\xfe\x00", 400),
        (b"[]", 400),
        (b'{"message": {}}', 400),
        (b'{"update_id": "815390001"}', 400),
        (b'{"update_id": true}', 400),
    ],
)
async def test_oversized_and_malformed_bodies_are_refused(
    client: TestClient, services: Services, body: bytes, status: int
) -> None:
    dialogs = stand_in(services, Reply("hi"))
    assert await post(client, None, body=body) == status
    assert dialogs.inbounds == []


async def test_the_secret_is_checked_before_the_body_is_read(client: TestClient) -> None:
    assert await post(client, None, secret="wrong", body=b"x" * (2 * 1024 * 1024)) == 403


# -- update kinds → Inbound --------------------------------------------------------------

KINDS: dict[str, dict[str, Any]] = {
    "start": {"kind": "start", "payload": "r_V1"},
    "start_plain": {"kind": "start"},
    "text": {"kind": "text", "text": "运河步道沿线增设公共厕所"},
    "callback_query": {"kind": "button", "payload": "m:submit"},
    "photo": {
        "kind": "image",
        "text": "路口积水",
        # The size Telegram gives, so that a step can refuse an oversized photo at once.
        "media": Media("AgACAgUAAxkBAAIBbWdz-large", "image/jpeg", size=131072),
    },
    "image_document": {
        "kind": "image",
        "media": Media("BQACAgUAAxkBAAIBcGdz-imgdoc", "image/jpeg", size=2411724),
    },
    "voice": {"kind": "voice", "media": Media("AwACAgUAAxkBAAIBbmdz-voice", "audio/ogg")},
    "audio": {"kind": "voice", "media": Media("CQACAgUAAxkBAAIBb2dz-audio", "audio/mpeg")},
    "location": {"kind": "location", "location": Location(33.610221, 119.015874)},
    "venue": {
        "kind": "location",
        "location": Location(33.5975, 119.0196, "荷花社区服务中心 淮安区荷花路 8 号"),
    },
    "video": {"kind": "unsupported", "unsupported": "video"},
    "video_note": {"kind": "unsupported", "unsupported": "video"},
    # A file: the flows that take files take it (research findings); elsewhere it is
    # answered as not taken (tests/test_research.py).
    "document": {
        "kind": "file",
        "media": Media(
            "BQACAgUAAxkBAAIBc2dz-pdf", "application/pdf", size=88123, name="情况说明.pdf"
        ),
    },
    "sticker": {"kind": "unsupported", "unsupported": "sticker"},
    "animation": {"kind": "unsupported", "unsupported": "animation"},
    "contact": {"kind": "unsupported", "unsupported": "contact"},
    "poll": {"kind": "unsupported", "unsupported": "poll"},
    "dice": {"kind": "unsupported", "unsupported": "other"},
}


@pytest.mark.parametrize("name", list(KINDS))
async def test_each_update_kind_reaches_the_dialogs_as_the_right_inbound(
    client: TestClient, services: Services, name: str
) -> None:
    dialogs = stand_in(services)
    update = payload(name)
    assert await post(client, update) == 200
    expected = Inbound(
        "telegram",
        str(USER),
        message_id=str(update["update_id"]),
        display_name=NAME,
        **KINDS[name],
    )
    assert dialogs.inbounds == [expected]


@pytest.mark.parametrize(
    "name", ["edited_message", "group_message", "channel_post", "my_chat_member_blocked"]
)
async def test_edits_groups_channels_and_membership_changes_are_ignored(
    client: TestClient, services: Services, fake: FakeBotAPI, name: str
) -> None:
    dialogs = stand_in(services, Reply("hi"))
    assert await post(client, payload(name)) == 200  # 200: Telegram must not retry it
    assert dialogs.inbounds == []
    assert fake.methods() == ["getMe"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/start r_DH-JY-HB", "r_DH-JY-HB"),
        ("/start@mashangyi_test_bot r_V1", "r_V1"),
        ("/start " + "a" * 64, "a" * 64),
        ("/start " + "a" * 65, ""),  # longer than a deep link can be
        ("/start r_V1<b>", ""),  # not the deep-link alphabet
        ("/start r_V1 extra", ""),
    ],
)
async def test_start_payloads_outside_the_deep_link_rules_are_dropped(
    client: TestClient, services: Services, text: str, expected: str
) -> None:
    dialogs = stand_in(services)
    update = payload("start")
    update["message"]["text"] = text
    assert await post(client, update) == 200
    assert [(i.kind, i.payload) for i in dialogs.inbounds] == [("start", expected)]


async def test_an_update_ptb_cannot_parse_still_gets_a_polite_answer(
    client: TestClient, services: Services
) -> None:
    dialogs = stand_in(services)
    update = payload("poll")
    del update["message"]["poll"]["members_only"]  # PTB 22.8 insists on it (Bot API 10.0)
    assert await post(client, update) == 200
    assert [(i.kind, i.unsupported, i.user_ref) for i in dialogs.inbounds] == [
        ("unsupported", "other", str(USER))
    ]


async def test_a_failure_that_can_pass_asks_telegram_to_deliver_again(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    stand_in(services, error=ConnectionResetError("database went away"))
    assert await post(client, payload("text")) == 500
    assert "sendMessage" not in fake.methods()
    assert await outbox(services) == []
    assert await failures(services) == []  # not given up on: nothing recorded
    dialogs = stand_in(services, Reply("好的"))
    assert await post(client, payload("text")) == 200
    assert len(dialogs.inbounds) == 1
    assert fake.sent_texts() == ["好的"]


# -- replies -----------------------------------------------------------------------------


async def test_replies_are_sent_with_one_inline_button_per_row(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    stand_in(
        services,
        Reply("收到"),
        Reply("确认吗？", (Button("确认提交", "s:confirm"), Button("取消", "s:cancel"))),
    )
    update = payload("text")
    assert await post(client, update) == 200
    assert [p["chat_id"] for p in fake.requests("sendMessage")] == [USER, USER]
    assert fake.sent_texts() == ["收到", "确认吗？"]
    assert fake.keyboards() == [
        None,
        [[("确认提交", "s:confirm")], [("取消", "s:cancel")]],
    ]
    rows = await outbox(services)
    assert [(r.idempotency_key, r.status, r.address) for r in rows] == [
        (f"telegram:reply:{update['update_id']}:0", "sent", str(USER)),
        (f"telegram:reply:{update['update_id']}:1", "sent", str(USER)),
    ]


async def test_a_button_press_is_answered_and_its_keyboard_replaced_by_the_choice(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    stand_in(services, Reply("请用一句话写下议题标题"))
    update = payload("callback_query")
    query = update["callback_query"]
    assert await post(client, update) == 200
    assert fake.requests("answerCallbackQuery") == [{"callback_query_id": query["id"]}]
    (edit,) = fake.requests("editMessageText")
    assert edit["chat_id"] == USER
    assert edit["message_id"] == query["message"]["message_id"]
    assert edit["text"] == query["message"]["text"] + "\n\n✅ 已选择：提议题"
    assert "reply_markup" not in edit  # the keyboard is gone
    # Delivered again: the edit is now "not modified" (400), which must not fail the update.
    assert await post(client, update) == 200
    assert [c.status for c in fake.calls if c.method == "editMessageText"] == [200, 400]


async def test_the_same_update_twice_has_one_effect(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    update = payload("start")
    assert await post(client, update) == 200
    assert await post(client, copy.deepcopy(update)) == 200
    assert len(fake.sent_texts()) == 1
    assert fake.sent_texts()[0].startswith("欢迎来到一村议事室")
    for model in (Person, ChannelIdentity, InboundReceipt, OutboxMessage):
        assert await count(services, model) == 1


async def test_a_reply_the_bot_api_fails_with_5xx_is_delivered_later_by_the_outbox(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    fake.fail("sendMessage", 502, html=True)  # a proxy's error page, not JSON
    assert await post(client, payload("start")) == 200
    assert fake.sent_texts() == []
    (row,) = await outbox(services)
    assert (row.status, row.attempts, row.channel, row.address) == (
        "pending",
        1,
        "telegram",
        "1001",
    )
    assert row.last_error and row.last_error.startswith("NetworkError")
    assert await services.dispatcher().run_once() == 1
    assert fake.sent_texts()[0].startswith("欢迎来到一村议事室")
    assert fake.keyboards() == [
        [[("提议题", "m:submit")], [("我的议题", "m:mine")], [("换议事室", "m:room")]]
    ]
    (row,) = await outbox(services)
    assert row.status == "sent"


async def test_after_a_429_the_replies_wait_retry_after_and_keep_their_order(
    client: TestClient, services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    stand_in(services, Reply("一"), Reply("二"), Reply("三"))
    fake.fail("sendMessage", 429, retry_after=40)
    fake_sends_before = len(fake.requests("sendMessage", ok_only=False))
    assert await post(client, payload("text")) == 200
    # The first failed; the others were not tried, so they cannot overtake it.
    assert len(fake.requests("sendMessage", ok_only=False)) == fake_sends_before + 1
    rows = await outbox(services)
    # A wait the platform asked for is not a failed attempt.
    assert [(r.status, r.attempts) for r in rows] == [("pending", 0)] * 3
    assert rows[0].not_before == clock.now() + timedelta(seconds=40)
    dispatcher = services.dispatcher()
    assert await dispatcher.run_once() == 0  # not yet, and the others wait behind the first
    clock.advance(timedelta(seconds=40))
    for sent in (["一"], ["一", "二"], ["一", "二", "三"]):
        assert await dispatcher.drain() == 1  # one a second: Telegram's pace for one chat
        assert fake.sent_texts() == sent
        clock.advance(CHAT_INTERVAL)


async def test_a_worker_dying_mid_reply_leaves_it_to_the_outbox_after_the_hold(
    client: TestClient,
    services: Services,
    fake: FakeBotAPI,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def dies(*args: object, **kwargs: object) -> None:
        raise ConnectionResetError("worker killed")  # as good as no answer: Telegram retries

    update = payload("start")
    with monkeypatch.context() as patch:
        patch.setattr(Bot, "send_message", dies)
        # Answered once the reply was in the outbox, before it was sent.
        assert await post(client, update) == 200
    (row,) = await outbox(services)
    assert (row.status, row.claimed_until) == ("sending", clock.now() + REPLY_HOLD)
    # Should Telegram deliver the update again, the dialogs answer from their receipt, and
    # the reply, already in the outbox, is not sent a second time.
    assert await post(client, update) == 200
    assert fake.sent_texts() == []
    assert await services.dispatcher().run_once() == 0  # held: the webhook might be sending
    clock.advance(REPLY_HOLD)
    assert await services.dispatcher().run_once() == 0  # to the end of the hold
    clock.advance(timedelta(seconds=1))
    assert await services.dispatcher().run_once() == 1
    assert len(fake.sent_texts()) == 1
    assert fake.sent_texts()[0].startswith("欢迎来到一村议事室")


async def test_a_reply_sent_while_the_database_drops_is_recorded_later_and_not_resent(
    client: TestClient, services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    """The Bot API took the reply, then the database went away before the send was
    recorded: it must be recorded once the database is back, not sent again when the
    hold runs out (the drill's database outage sent one reply twice)."""
    records = services.records
    services.records = make_session_factory(make_engine(DEAD_DATABASE))
    assert await post(client, payload("start")) == 200  # sent: nothing to deliver again
    assert len(fake.sent_texts()) == 1
    services.records = records  # the database is back
    for _ in range(100):
        (row,) = await outbox(services)
        if row.status == "sent":
            break
        await asyncio.sleep(0.05)
    assert row.status == "sent"
    clock.advance(REPLY_HOLD + timedelta(seconds=1))
    assert await services.dispatcher().run_once() == 0
    assert len(fake.sent_texts()) == 1


async def test_the_webhook_answers_once_the_replies_are_kept_not_once_they_are_sent(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    """A slow Bot API must not hold the webhook: the update is answered once its replies
    are in the outbox (written with its receipt), and they are sent right after."""
    slow = fake.gates["sendMessage"] = asyncio.Event()
    headers = {"Content-Type": "application/json", SECRET_HEADER: SECRET}
    response = await asyncio.wait_for(
        client.post("/telegram", data=json.dumps(payload("start")), headers=headers), 5
    )
    assert response.status == 200
    assert "sendMessage" not in fake.methods()  # not answered yet
    (row,) = await outbox(services)
    assert row.status == "sending"  # kept, and held for the webhook's own send
    assert await count(services, InboundReceipt) == 1
    slow.set()
    await client.app[TELEGRAM].idle()
    assert len(fake.sent_texts()) == 1
    assert fake.sent_texts()[0].startswith("欢迎来到一村议事室")
    (row,) = await outbox(services)
    assert row.status == "sent"


async def test_quick_updates_in_one_chat_are_sent_in_order_without_waiting_for_the_loop(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    """Turns answered before the previous turn's replies went: each turn sends after the
    one before, at once (not left to the paced delivery loop)."""
    stand_in(services, Reply("收到"))
    slow = fake.gates["sendMessage"] = asyncio.Event()
    headers = {"Content-Type": "application/json", SECRET_HEADER: SECRET}
    for number in range(3):
        body = json.dumps(later_update(number))
        response = await client.post("/telegram", data=body, headers=headers)
        assert response.status == 200
    slow.set()
    await client.app[TELEGRAM].idle()
    assert len(fake.sent_texts()) == 3
    assert [row.status for row in await outbox(services)] == ["sent"] * 3
    sent_keys = [
        row.idempotency_key for row in sorted(await outbox(services), key=lambda r: r.sent_at)
    ]
    assert sent_keys == [row.idempotency_key for row in await outbox(services)]
    arrived = [call.at for call in fake.calls if call.method == "sendMessage"]
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(arrived))  # one a second


def later_update(number: int) -> dict[str, Any]:
    """The resident's text message, as a later update (another update_id)."""
    update = payload("text")
    update["update_id"] += number
    return update


async def notice(services: Services, key: str, text: str, chat: int = USER) -> None:
    async with transaction(services.sessions) as session:
        await enqueue(
            session,
            key=key,
            channel="telegram",
            address=str(chat),
            kind="notice",
            message=OutboundMessage(text=text),
            now=services.clock.now(),
        )


async def drain_paced(services: Services, fake: FakeBotAPI, clock: FixedClock) -> list[list[str]]:
    """Deliver everything, a second at a time; what the fake received in each second."""
    dispatcher, seconds, seen = services.dispatcher(), list[list[str]](), 0
    while True:
        await dispatcher.drain()
        texts = fake.sent_texts()
        if len(texts) == seen:
            return seconds
        seconds.append(texts[seen:])
        seen = len(texts)
        clock.advance(CHAT_INTERVAL)


async def test_replies_during_an_outage_queue_behind_the_chats_earlier_messages(
    client: TestClient, services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    """The receipt that overtook six prompts: a 429 leaves a turn's replies to the outbox;
    the next turn's reply must not be sent past them."""
    stand_in(services, *(Reply(f"提示{n}") for n in range(1, 7)))
    fake.fail("sendMessage", 429, retry_after=10)
    assert await post(client, later_update(1)) == 200
    stand_in(services, Reply("回执"))
    assert await post(client, later_update(2)) == 200
    assert fake.sent_texts() == []  # not sent past the six waiting prompts
    clock.advance(timedelta(seconds=10))
    seconds = await drain_paced(services, fake, clock)
    assert seconds == [[f"提示{n}"] for n in range(1, 7)] + [["回执"]]


async def test_a_notice_waiting_for_the_chat_goes_out_before_the_replies_at_once(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    """A message the same turn (or just before) wrote to the chat is not overtaken, nor does
    it make the replies wait for the delivery loop: the webhook sends both, in order."""
    await notice(services, "n1", "您的议题已通过初审")
    stand_in(services, Reply("收到"), Reply("还有什么？"))
    assert await post(client, payload("text")) == 200
    assert fake.sent_texts() == ["您的议题已通过初审", "收到", "还有什么？"]
    assert {r.status for r in await outbox(services)} == {"sent"}


async def test_after_an_outage_a_turn_does_not_send_the_backlog_in_one_burst(
    client: TestClient, services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    """A few messages left by failures, due again: the next turn leaves them and its reply
    to the outbox's pace (one a second per chat) instead of sending all at once."""
    fake.fail("sendMessage", 502)
    await notice(services, "n1", "您的议题已通过初审")
    await notice(services, "n2", "请补充材料")
    await services.dispatcher().run_once()  # the head fails: a backlog with its reason
    clock.advance(timedelta(minutes=5))  # due again
    stand_in(services, Reply("收到"))
    assert await post(client, payload("text")) == 200
    assert fake.sent_texts() == []
    seconds = await drain_paced(services, fake, clock)
    assert seconds == [["您的议题已通过初审"], ["请补充材料"], ["收到"]]


async def test_the_outbox_drains_a_backlog_one_message_a_second_per_chat(
    services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    for number in range(3):
        await notice(services, f"a{number}", f"甲{number}")
        await notice(services, f"b{number}", f"乙{number}", chat=2002)
    assert await drain_paced(services, fake, clock) == [
        ["甲0", "乙0"],
        ["甲1", "乙1"],
        ["甲2", "乙2"],
    ]


async def test_a_429s_retry_after_is_waited_exactly_not_the_longer_backoff(
    services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    await notice(services, "n1", "通知")
    fake.fail("sendMessage", 429, retry_after=10)
    dispatcher = services.dispatcher()  # base backoff 30 s
    assert await dispatcher.run_once() == 1
    (row,) = await outbox(services)
    assert row.not_before == clock.now() + timedelta(seconds=10)
    assert (row.status, row.attempts) == ("pending", 0)  # a wait asked for, not a failure
    clock.advance(timedelta(seconds=10))
    assert await dispatcher.run_once() == 1
    assert fake.sent_texts() == ["通知"]


async def test_a_restarted_process_sends_the_replies_its_killed_predecessor_held_at_once(
    config_path: Path,
    engine: object,
    clock: FixedClock,
    fake: FakeBotAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def dies(*args: object, **kwargs: object) -> None:
        raise ConnectionResetError("worker killed")  # the process dies mid-send

    first = make_services(config_path, clock)
    name = await first.take_worker_id("serve")
    stand_in(first, Reply("收到"))
    client = TestClient(TestServer(create_app(first, run_outbox=False)))
    await client.start_server()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(Bot, "send_message", dies)
            assert await post(client, payload("text")) == 200  # answered once in the outbox
        (row,) = await outbox(first)
        assert (row.status, row.claimed_by) == ("sending", name)
    finally:
        await client.close()
        await first.close()  # its identity goes with it, as a killed process's lock does
    second = make_services(config_path, clock)
    try:
        assert await second.take_worker_id("serve") == name
        assert await second.dispatcher().run_once() == 1  # now, not after the 2-minute hold
        assert fake.sent_texts() == ["收到"]
    finally:
        await close_outbound(second)
        await second.close()


async def test_a_reply_to_someone_who_blocked_the_bot_is_recorded_dead(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    stand_in(services, Reply("收到"))
    fake.blocked.add(USER)
    assert await post(client, payload("text")) == 200
    (row,) = await outbox(services)
    assert (row.status, row.attempts) == ("dead", 1)
    assert row.last_error and row.last_error.startswith("Forbidden")
    assert await services.dispatcher().run_once() == 0


async def test_the_bot_api_unreachable_at_start_up_does_not_stop_the_service(
    database_url: str, engine: object, tmp_path: Path, clock: FixedClock
) -> None:
    gone = FakeBotAPI()
    await gone.start()
    base_url = gone.base_url
    await gone.close()  # nothing listens there any more: connection refused
    path = tmp_path / "c.toml"
    path.write_text(config_text(database_url, base_url), "utf-8")
    services = make_services(path, clock)
    stand_in(services, Reply("收到"))
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        assert await post(client, payload("text")) == 200
        (row,) = await outbox(services)
        assert (row.status, row.attempts) == ("pending", 1)
    finally:
        await client.close()
        await services.close()


async def test_start_up_refuses_a_token_the_bot_api_rejects(
    database_url: str, engine: object, fake: FakeBotAPI, tmp_path: Path, clock: FixedClock
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(config_text(database_url, fake.base_url, bot_token="999:wrong"), "utf-8")
    services = make_services(path, clock)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    try:
        with pytest.raises(ConfigError, match=r"telegram\.bot_token"):
            await client.start_server()
    finally:
        await client.close()
        await services.close()


async def test_a_bot_token_without_a_webhook_secret_stops_start_up(
    database_url: str, fake: FakeBotAPI, tmp_path: Path, clock: FixedClock
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(config_text(database_url, fake.base_url, webhook_secret=""), "utf-8")
    services = make_services(path, clock)
    try:
        with pytest.raises(ConfigError, match=r"telegram\.webhook_secret"):
            create_app(services, run_outbox=False)
    finally:
        await services.close()


# -- the whole dialog --------------------------------------------------------------------


class Resident:
    """Someone chatting with the bot in the Telegram app: every message is an Update."""

    def __init__(
        self, client: TestClient, fake: FakeBotAPI, user: int = USER, **profile: Any
    ) -> None:
        self.client, self.fake, self.user = client, fake, user
        self.profile = {"id": user, **profile}  # the "from" of every update
        self.update_id = 815391000 + (user - USER) * 1000
        self.message_id = 700

    def _next(self) -> tuple[int, int]:
        self.update_id += 1
        self.message_id += 1
        return self.update_id, self.message_id

    async def send(self, **content: Any) -> None:
        update_id, message_id = self._next()
        message = payload("text")["message"] | {"message_id": message_id} | content
        message["from"] = message["from"] | self.profile
        message["chat"] = message["chat"] | {"id": self.user}
        if "text" not in content:
            del message["text"]
        self.last_update = {"update_id": update_id, "message": message}
        assert await post(self.client, self.last_update) == 200

    async def say(self, text: str) -> None:
        await self.send(text=text)

    async def press(self, label: str) -> None:
        """Press ``label`` on the newest bot message that still shows it."""
        for sent in reversed(self.fake.results("sendMessage")):
            if sent["chat"]["id"] != self.user:
                continue
            for row in (sent.get("reply_markup") or {}).get("inline_keyboard", []):
                for button in row:
                    if button["text"] == label:
                        update_id, _ = self._next()
                        query = payload("callback_query")["callback_query"] | {
                            "id": f"q{update_id}",
                            "message": sent,
                            "data": button["callback_data"],
                        }
                        query["from"] = query["from"] | self.profile
                        update = {"update_id": update_id, "callback_query": query}
                        assert await post(self.client, update) == 200
                        return
        raise AssertionError(f"no button {label!r} on screen")

    def last(self) -> str:
        mine = [m["text"] for m in self.fake.results("sendMessage") if m["chat"]["id"] == self.user]
        return mine[-1]


async def test_a_resident_submits_a_topic_through_the_whole_dialog(
    client: TestClient, services: Services, fake: FakeBotAPI, tmp_path: Path
) -> None:
    li = Resident(client, fake)
    await li.say("/start r_V1")
    assert li.last() == say("home", "welcome", room="一村议事室")
    await li.press("提议题")
    assert li.last().startswith("请用一句话写下议题标题")
    await li.say("运河步道沿线增设公共厕所")
    assert li.last().startswith("请详细描述情况")
    await li.say("沿线3公里没有公厕，散步的老人很不方便")
    assert li.last().startswith("可以补充照片、语音或位置")
    await li.send(photo=payload("photo")["message"]["photo"])
    assert li.last().startswith("已收到照片（共 1 个附件）")
    await li.send(location={"latitude": 33.61, "longitude": 119.02})
    assert li.last().startswith("已收到位置：33.61000, 119.02000")
    await li.press("下一步")
    assert li.last().startswith("如需召集人电话联系您")
    await li.say("138 0000 0000")
    assert li.last().startswith("请确认您的议题")
    await li.press("确认提交")
    assert li.last().startswith("议题已提交！")

    async with services.sessions() as session:
        (topic,) = (await session.exec(select(Topic))).all()
        identity = (await session.exec(select(ChannelIdentity))).one()
        (attachment,) = (await session.exec(select(Attachment))).all()
    assert (topic.title, topic.background) == (
        "运河步道沿线增设公共厕所",
        "沿线3公里没有公厕，散步的老人很不方便",
    )
    assert (topic.state, topic.source, topic.contact_phone) == (
        "submitted",
        "public",
        "13800000000",
    )
    assert topic.location == {"latitude": 33.61, "longitude": 119.02, "label": ""}
    assert (identity.channel, identity.external_id) == ("telegram", str(USER))
    assert topic.submitter_id == identity.person_id
    assert topic.number in li.last()
    assert (attachment.topic_id, attachment.channel, attachment.source_ref) == (
        topic.id,
        "telegram",
        "AgACAgUAAxkBAAIBbWdz-large",
    )

    # What the resident saw: the keyboards, and each pressed keyboard replaced by the choice.
    keyboards = fake.keyboards()
    assert keyboards[0] == [
        [("提议题", "m:submit")],
        [("我的议题", "m:mine")],
        [("换议事室", "m:room")],
    ]
    assert [("确认提交", "s:confirm")] in keyboards[-2]  # the summary
    assert keyboards[-1] == [[("我的议题", "m:mine")]]  # the receipt
    assert [e["text"].rsplit("\n", 1)[-1] for e in fake.requests("editMessageText")] == [
        "✅ 已选择：提议题",
        "✅ 已选择：下一步",
        "✅ 已选择：确认提交",
    ]
    assert len(fake.requests("answerCallbackQuery")) == 3
    assert {r.status for r in await outbox(services) if r.kind == "reply"} == {"sent"}

    # The photo is fetched from the Bot API's file URL by the media downloader.
    jpeg = b"\xff\xd8\xff\xe0 jpeg"
    fake.add_file("AgACAgUAAxkBAAIBbWdz-large", jpeg, "photos/file_7.jpg")
    assert await services.media_downloader().run_once() == 1
    async with services.sessions() as session:
        stored = await session.get(Attachment, attachment.id)
    assert stored is not None
    assert (stored.status, stored.content_type, stored.size_bytes) == (
        "stored",
        "image/jpeg",
        len(jpeg),
    )
    assert (tmp_path / "media" / stored.storage_key).read_bytes() == jpeg
    assert fake.downloads == ["photos/file_7.jpg"]


# -- poison updates: answered 2xx, recorded once, never in the way of the next ----------


async def test_nul_and_lone_surrogates_are_removed_before_anything_is_stored(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    li = Resident(client, fake, first_name="伟\x00\ud800")
    await li.say("/start r_V1")
    assert li.last() == say("home", "welcome", room="一村议事室")
    await li.press("提议题")
    await li.say("运河步道\x00增设公厕")
    assert li.last().startswith("请详细描述情况")
    sent = len(fake.sent_texts())
    assert await post(client, li.last_update) == 200  # delivered again: one effect
    assert len(fake.sent_texts()) == sent
    await li.say("沿线\ud8003公里没有公厕\x00，老人不便")
    await li.press("下一步")
    await li.press("跳过")
    await li.press("确认提交")
    assert li.last().startswith("议题已提交！")
    async with services.sessions() as session:
        topic = (await session.exec(select(Topic))).one()
        person = (await session.exec(select(Person))).one()
    assert (topic.title, topic.background) == ("运河步道增设公厕", "沿线3公里没有公厕，老人不便")
    assert person.display_name == NAME
    assert await failures(services) == []


@pytest.mark.parametrize("where", ["user", "chat", "update_id", "presser"])
async def test_an_id_outside_the_bot_apis_range_is_refused_once_and_blocks_nothing(
    client: TestClient, services: Services, fake: FakeBotAPI, where: str
) -> None:
    update = payload("callback_query" if where == "presser" else "text")
    if where == "user":
        update["message"]["from"]["id"] = 10**200
    elif where == "chat":
        update["message"]["chat"]["id"] = -(10**200)
    elif where == "update_id":
        update["update_id"] = 10**200
    else:
        update["callback_query"]["from"]["id"] = 2**52
    assert await post(client, update) == 200
    assert await post(client, copy.deepcopy(update)) == 200  # a re-delivery: the same row
    (failure,) = await failures(services)
    assert (failure.channel, failure.error, failure.deliveries) == ("telegram", "refused", 2)
    assert "out of the Bot API's range" in failure.message
    assert await count(services, Person) == 0
    assert "sendMessage" not in fake.methods()
    assert await post(client, payload("start")) == 200  # the resident's next update
    assert fake.sent_texts()[0].startswith("欢迎来到一村议事室")


async def test_json_nested_too_deep_is_answered_200_and_recorded_once(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    body = b'{"update_id": 815390900, "message": {"text": ' + nested(100_000) + b"}}"
    assert await post(client, None, body=body) == 200
    assert await post(client, None, body=body) == 200
    (failure,) = await failures(services)
    assert (failure.key, failure.error, failure.deliveries) == (body_key(body), "refused", 2)
    assert failure.excerpt.startswith('{"update_id": 815390900, "message": {"text": [[[')
    assert len(failure.excerpt) == 500
    # Nesting as deep as updates really have (here in a field a newer Bot API might add).
    update = payload("start")
    update["message"]["new_field"] = json.loads(nested(MAX_DEPTH - 3))
    assert await post(client, update) == 200
    assert fake.sent_texts()[0].startswith("欢迎来到一村议事室")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_the_depth_bound_counts_levels_and_not_brackets_in_strings() -> None:
    assert not too_deep(nested(MAX_DEPTH))
    assert too_deep(nested(MAX_DEPTH + 1))
    assert too_deep(b'{"a": {"b": ' + nested(MAX_DEPTH - 1) + b"}}")
    assert not too_deep(b'{"a": "' + b"[" * 1000 + b'"}')  # in a string
    assert not too_deep(b'["\\"' + b"{" * 1000 + b'", ' + b"[], " * 1000 + b"[]]")
    assert not too_deep(b"[" * 1000)  # unbalanced: not JSON, the parser's to refuse


async def test_a_message_without_a_chat_is_answered_200_and_blocks_nothing(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    dialogs = stand_in(services, Reply("好的"))
    update = payload("text")
    del update["message"]["chat"]
    assert await post(client, update) == 200
    assert await post(client, update) == 200
    assert dialogs.inbounds == []
    assert await post(client, payload("start")) == 200
    assert fake.sent_texts() == ["好的"]


async def test_an_update_the_database_refuses_is_answered_200_and_recorded_once(
    client: TestClient, services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    """A location at NaN (JSON as Python reads it) would go into the draft: JSON columns
    refuse NaN, on every delivery again."""
    li = Resident(client, fake)
    await li.say("/start r_V1")
    await li.press("提议题")
    await li.say("运河步道增设公厕")
    await li.say("沿线3公里没有公厕")
    assert li.last().startswith("可以补充照片、语音或位置")
    message = payload("location")["message"] | {
        "location": {"latitude": float("nan"), "longitude": 119.0}
    }
    poison = {"update_id": li.update_id + 1, "message": message}
    li.update_id += 1
    body = json.dumps(poison).encode()  # Python writes NaN, and reads it back
    assert await post(client, None, body=body) == 200
    clock.advance(timedelta(seconds=30))
    assert await post(client, None, body=body) == 200
    (failure,) = await failures(services)
    assert (failure.key, failure.error, failure.deliveries) == (
        str(poison["update_id"]),
        "ValueError",
        2,
    )
    assert (failure.first_seen_at, failure.last_seen_at) == (
        clock.now() - timedelta(seconds=30),
        clock.now(),
    )
    assert '"latitude": NaN' in failure.excerpt
    await li.send(location={"latitude": 33.61, "longitude": 119.02})
    assert li.last().startswith("已收到位置：33.61000, 119.02000")


async def test_a_bug_in_the_dialogs_is_answered_200_recorded_once_and_blocks_nothing(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    stand_in(services, error=RuntimeError("a bug"))
    update = payload("text")
    assert await post(client, update) == 200
    assert await post(client, update) == 200
    (failure,) = await failures(services)
    assert (failure.channel, failure.key, failure.error, failure.message, failure.deliveries) == (
        "telegram",
        str(update["update_id"]),
        "RuntimeError",
        "a bug",
        2,
    )
    assert "运河步道沿线增设公共厕所" in failure.excerpt
    assert "sendMessage" not in fake.methods()
    stand_in(services, Reply("好的"))
    assert await post(client, update | {"update_id": update["update_id"] + 1}) == 200
    assert fake.sent_texts() == ["好的"]


async def test_the_database_unreachable_still_asks_telegram_to_deliver_again(
    fake: FakeBotAPI, tmp_path: Path, clock: FixedClock
) -> None:
    path = tmp_path / "c.toml"
    nowhere = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    path.write_text(config_text(nowhere, fake.base_url), "utf-8")
    services = make_services(path, clock)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        assert await post(client, payload("text")) == 500
        assert await post(client, payload("text")) == 500
        assert "sendMessage" not in fake.methods()
    finally:
        await client.close()
        await services.close()


# -- the outbox sender -------------------------------------------------------------------


def message(
    body: dict[str, Any], address: str = str(USER)
) -> tuple[OutboxMessage, OutboundMessage]:
    """A row with this body and its message, as the dispatcher hands them to a sender."""
    row = OutboxMessage(
        idempotency_key="k",
        channel="telegram",
        address=address,
        kind="topic.accepted",
        body=body,
        not_before=None,  # type: ignore[arg-type]
        created_at=None,  # type: ignore[arg-type]
    )
    return row, OutboundMessage.from_json(body)


def sender(services: Services) -> TelegramSender:
    found = services.senders["telegram"]
    assert isinstance(found, TelegramSender)
    return found


async def test_the_sender_sends_a_notice_with_its_link_and_buttons(
    services: Services, fake: FakeBotAPI
) -> None:
    await sender(services).send(
        *message(
            {
                "text": "您的议题已通过初审。",
                "topic_number": "D1-2026-000001",
                "url": "https://bot.example.org/t/D1-2026-000001",
                "buttons": [["我的议题", "m:mine"]],
            }
        )
    )
    assert fake.sent_texts(USER) == [
        "您的议题已通过初审。\n\n详情：https://bot.example.org/t/D1-2026-000001"
    ]
    assert fake.keyboards() == [[[("我的议题", "m:mine")]]]


async def test_the_sender_splits_a_text_longer_than_telegram_takes(
    services: Services, fake: FakeBotAPI
) -> None:
    text = "议" * 3000 + "\n" + "题" * 3000
    await sender(services).send(*message({"text": text, "buttons": [["我的议题", "m:mine"]]}))
    assert fake.sent_texts() == ["议" * 3000, "题" * 3000]  # cut at the line break
    assert fake.keyboards() == [None, [[("我的议题", "m:mine")]]]  # buttons under the last


@pytest.mark.parametrize(
    "failure, expected",
    [
        ({"status": 429, "retry_after": 7}, TemporaryFailure),
        ({"status": 500}, TemporaryFailure),
        ({"status": 502, "html": True}, TemporaryFailure),
        ({"status": 403}, PermanentFailure),
        ({"status": 400}, PermanentFailure),
    ],
)
async def test_the_sender_maps_bot_api_errors_for_the_outbox(
    services: Services, fake: FakeBotAPI, failure: dict[str, Any], expected: type
) -> None:
    fake.fail("sendMessage", **failure)
    with pytest.raises(expected) as raised:
        await sender(services).send(*message({"text": "你好"}))
    if failure["status"] == 429:
        assert raised.value.retry_after == timedelta(seconds=7)
    assert fake.requests("sendMessage") == []


async def test_the_dispatcher_honours_retry_after_and_gives_up_on_a_blocked_chat(
    services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    from notices.outbox import enqueue

    async with transaction(services.sessions) as session:
        for key, address in (("a", "1001"), ("b", "2002")):
            await enqueue(
                session,
                key=key,
                channel="telegram",
                address=address,
                kind="notice",
                message=OutboundMessage(text=f"通知 {key}"),
                now=clock.now(),
            )
    fake.blocked.add(2002)
    fake.fail("sendMessage", 429, retry_after=3600)
    assert await services.dispatcher().run_once() == 2
    a, b = await outbox(services)
    assert (a.status, a.not_before) == ("pending", clock.now() + timedelta(seconds=3600))
    # The 429 paused the whole channel: b waits too, without an attempt counted.
    assert (b.status, b.attempts, b.not_before) == (
        "pending",
        0,
        clock.now() + timedelta(seconds=3600),
    )
    assert await services.dispatcher().run_once() == 0  # nothing is claimed meanwhile
    clock.advance(timedelta(hours=1))
    assert await services.dispatcher().run_once() == 2
    assert fake.sent_texts() == ["通知 a"]
    a, b = await outbox(services)
    assert (a.status, b.status, b.attempts) == ("sent", "dead", 1)


# -- rows in the outbox from before the typed message -------------------------------------


async def raw_row(services: Services, key: str, body: Any, topic_id: int | None = None) -> None:
    """A row inserted as it stands in the table, ``body`` stored as given (not enqueued)."""
    now = services.clock.now()
    async with transaction(services.sessions) as session:
        session.add(
            OutboxMessage(
                idempotency_key=key,
                channel="telegram",
                address=str(USER),
                kind="topic.accepted",
                body=body,
                topic_id=topic_id,
                not_before=now,
                created_at=now,
            )
        )


async def a_topic(services: Services) -> int:
    now = services.clock.now()
    async with transaction(services.sessions) as session:
        room = (await session.exec(select(Room))).first()
        assert room is not None and room.id is not None
        topic = Topic(
            number="D1-2026-000001",
            room_id=room.id,
            source="public",
            title="运河步道增设公厕",
            state="submitted",
            step_started_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(topic)
        await session.flush()
        assert topic.id is not None
        return topic.id


async def test_rows_written_before_bodies_had_a_version_are_delivered_as_before(
    services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    """Rows already in the outbox when the typed message came in: bodies without a version,
    in the exact shapes notices/notify.py, notices/reminders/ and the webhook wrote."""
    topic_id = await a_topic(services)
    url = "https://bot.example.org/t/D1-2026-000001"
    card = {
        "text": "新议题待初审：运河步道增设公厕",
        "topic_number": "D1-2026-000001",
        "url": url,
        "buttons": [["受理", "b:tok-accept"], ["不予受理", "b:tok-decline"]],
        "review_url": "https://bot.example.org/review/abc?exp=1&sig=x",
    }
    await raw_row(services, "card", card, topic_id)
    await raw_row(services, "digest", {"text": "您有2件待办", "topic_number": "", "url": ""})
    await raw_row(services, "reply", {"text": "收到", "buttons": [["我的议题", "m:mine"]]})
    await raw_row(services, "handled", {"text": "【已处理】", "edit_message_id": "77"}, topic_id)
    await drain_paced(services, fake, clock)
    assert [row.status for row in await outbox(services)] == ["sent"] * 4
    assert fake.sent_texts(USER) == [
        f"新议题待初审：运河步道增设公厕\n\n详情：{url}",
        "您有2件待办",
        "收到",
    ]
    assert fake.keyboards() == [
        [[("受理", "b:tok-accept")], [("不予受理", "b:tok-decline")]],
        None,
        [[("我的议题", "m:mine")]],
    ]
    (edit,) = fake.requests("editMessageText")
    assert (edit["chat_id"], edit["message_id"], edit["text"]) == (USER, 77, "【已处理】")
    async with services.sessions() as session:
        remembered = (await session.exec(select(CardMessage))).all()
    sent_card = fake.results("sendMessage")[0]
    assert [(c.topic_id, c.message_id) for c in remembered] == [
        (topic_id, str(sent_card["message_id"]))
    ]


async def test_a_row_of_a_body_version_this_code_cannot_read_goes_dead_saying_so(
    services: Services, fake: FakeBotAPI, clock: FixedClock
) -> None:
    """Written by a newer release, read by this one (a rollback): the row is given up with
    the reason, nothing is sent, and the chat's next row goes out."""
    await raw_row(services, "future", {"v": 99, "text": "来自未来的版本"})
    await raw_row(services, "after", OutboundMessage(text="之后的通知").to_json())
    await drain_paced(services, fake, clock)
    future, after = await outbox(services)
    assert (future.status, future.attempts) == ("dead", 1)
    assert future.last_error is not None and "version 99" in future.last_error
    assert after.status == "sent"
    assert fake.sent_texts() == ["之后的通知"]


def test_the_file_url_follows_the_configured_base_url() -> None:
    assert file_base_url("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert file_base_url("http://127.0.0.1:81/tg/bot") == "http://127.0.0.1:81/tg/file/bot"
    with pytest.raises(ConfigError, match=r"telegram\.base_url"):
        file_base_url("https://proxy.example.org/")


# -- the media fetcher -------------------------------------------------------------------


def fetcher(services: Services) -> TelegramMediaFetcher:
    found = services.fetchers["telegram"]
    assert isinstance(found, TelegramMediaFetcher)
    return found


async def test_the_fetcher_downloads_from_the_configured_file_url(
    services: Services, fake: FakeBotAPI
) -> None:
    fake.add_file("VOICE", b"OggS voice", "voice/file_3.oga")
    assert await fetcher(services).fetch("VOICE") == (b"OggS voice", "audio/ogg")
    assert fake.requests("getFile") == [{"file_id": "VOICE"}]
    assert fake.downloads == ["voice/file_3.oga"]


async def test_the_fetcher_refuses_too_large_unknown_and_local_files(
    services: Services, fake: FakeBotAPI, tmp_path: Path
) -> None:
    fake.add_file("BIG", b"x" * 100, "photos/file_9.jpg")
    small = TelegramMediaFetcher(fetcher(services).client, max_bytes=99)
    with pytest.raises(MediaTooLarge):
        await small.fetch("BIG")
    with pytest.raises(BadRequest):
        await fetcher(services).fetch("NOPE")
    # A file_path naming a file on our own disk would make PTB read that file.
    secret = tmp_path / "secret.txt"
    secret.write_text("do not leak", "utf-8")
    fake.add_file("LOCAL", b"", str(secret))
    with pytest.raises(PermanentFailure):
        await fetcher(services).fetch("LOCAL")
    assert fake.downloads == []


# -- set-webhook and polling -------------------------------------------------------------


def replace_in(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text("utf-8").replace(old, new), "utf-8")


async def test_cli_set_webhook_points_telegram_at_our_https_address(
    config_path: Path, fake: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(main, ["--config", str(config_path), "telegram", "set-webhook"])
    assert code == 0
    assert fake.webhook == {
        "url": "https://bot.example.org/telegram",
        "secret_token": SECRET,
        "allowed_updates": ["message", "callback_query"],
    }
    assert "https://bot.example.org/telegram" in capsys.readouterr().out


async def test_cli_set_webhook_refuses_a_plain_http_address(
    config_path: Path, fake: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(config_path, "https://bot.example.org", "http://127.0.0.1:8080")
    code = await asyncio.to_thread(main, ["--config", str(config_path), "telegram", "set-webhook"])
    assert code == 1
    assert "server.public_base_url" in capsys.readouterr().err
    assert "setWebhook" not in fake.methods()


async def test_polling_serves_updates_without_a_webhook(
    services: Services, fake: FakeBotAPI
) -> None:
    dialogs = stand_in(services, Reply("收到"))
    first, second = payload("start"), payload("text")
    await fake.push_update(first)
    await fake.push_update(second)
    stop = asyncio.Event()
    task = asyncio.create_task(poll(services, stop))
    await fake.wait_for(lambda: len(fake.requests("sendMessage")) == 2)
    stop.set()
    await fake.release_pollers()
    await asyncio.wait_for(task, 10)
    assert [i.kind for i in dialogs.inbounds] == ["start", "text"]
    offsets = [p.get("offset") for p in fake.requests("getUpdates")]
    assert offsets[0] is None
    assert offsets[-1] == second["update_id"] + 1  # confirmed: not fetched again
    assert fake.requests("getUpdates")[0]["allowed_updates"] == ["message", "callback_query"]


async def test_polling_does_not_silently_take_a_live_bots_webhook(
    services: Services, fake: FakeBotAPI
) -> None:
    fake.webhook = {"url": "https://live.example.org/telegram"}
    with pytest.raises(ConfigError, match="webhook"):
        await poll(services, asyncio.Event())
    assert "deleteWebhook" not in fake.methods()
    stop = asyncio.Event()
    stop.set()  # only the start: replace the webhook, then stop before polling
    await poll(services, stop, replace_webhook=True)
    assert fake.webhook is None


async def test_a_convener_reviews_a_card_with_inline_buttons(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    """The card reaches the convener through the outbox with a keyboard; pressing and
    answering in Telegram takes the step, and the resident hears of it."""
    convener_id = 4242
    async with transaction(services.sessions) as session:
        person = Person(display_name="召集人")
        session.add(person)
        await session.flush()
        assert person.id is not None
        room = (await session.exec(select(Room).where(Room.code == "V1"))).one()
        session.add(
            ChannelIdentity(person_id=person.id, channel="telegram", external_id=str(convener_id))
        )
        session.add(RoleGrant(person_id=person.id, room_id=room.id, role="convener"))
    resident = Resident(client, fake)
    await resident.say("/start r_V1")
    for step in ("提议题",):
        await resident.press(step)
    await resident.say("小区下水道经常堵塞")
    await resident.say("每个月都堵，污水外溢")
    await resident.press("下一步")
    await resident.press("跳过")
    await resident.press("确认提交")
    assert await services.dispatcher().run_once() >= 1  # the card goes out

    convener = Resident(client, fake, user=convener_id)
    card = next(m for m in fake.results("sendMessage") if m["chat"]["id"] == convener_id)
    assert "【待初审】" in card["text"] and "小区下水道经常堵塞" in card["text"]
    labels = [b["text"] for row in card["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["受理", "不予受理", "非议事范围", "转办", "提交上级裁定"]
    await convener.press("不予受理")
    assert convener.last() == "请输入「理由」："
    await convener.say("属物业维修范围，已转物业公司")
    await convener.say("电话沟通")
    assert convener.last().startswith("已办理「不予受理」：")
    async with services.sessions() as session:
        topic = (await session.exec(select(Topic))).one()
    assert topic.state == "declined"
    await services.dispatcher().run_once()  # the resident is told, the card is edited
    assert "经初审不予受理" in resident.last() and "属物业维修范围" in resident.last()
    edits = [
        e
        for e in fake.requests("editMessageText")
        if str(e.get("message_id")) == str(card["message_id"])
        and str(e.get("chat_id")) == str(convener_id)
    ]
    assert edits[-1]["text"] == (
        f"【已处理】{topic.number}「小区下水道经常堵塞」\n召集人（召集人）于 03-02 10:00 不予受理，"
        "当前状态：不予受理。"
    )
    assert "reply_markup" not in edits[-1] or not edits[-1]["reply_markup"]


async def test_the_rest_of_a_flood_is_not_acknowledged_so_telegram_delivers_it_again(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    """The first refused message is told to slow down; later ones are left unacknowledged
    (not dropped with a 200), and a re-delivery once the window has room is handled."""
    now = [1000.0]
    services.dialogs.throttle = LocalThrottle(2, 10.0, now=lambda: now[0])
    statuses = []
    for update_id in range(50, 55):
        update = payload("text") | {"update_id": update_id}
        statuses.append(await post(client, update))
    assert statuses == [200, 200, 200, 429, 429]
    assert await count(services, InboundReceipt) == 2
    assert fake.sent_texts(USER).count("您发送得太快了，请稍等片刻再发。") == 1
    now[0] += 10.0
    assert await post(client, payload("text") | {"update_id": 53}) == 200
    assert await count(services, InboundReceipt) == 3
    # The one refused with a notice, delivered again and handled, gets its own reply too.
    before = len(fake.sent_texts(USER))
    assert await post(client, payload("text") | {"update_id": 52}) == 200
    assert await count(services, InboundReceipt) == 4
    assert len(fake.sent_texts(USER)) > before
