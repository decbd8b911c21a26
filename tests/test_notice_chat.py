"""The printable notice in the convener's chat as files, through the real services and
dispatcher against the fake platforms: on Telegram the PNG with sendPhoto and the PDF with
sendDocument (uploaded as multipart; the PDF's text extracted and checked), on WeChat the
PNG uploaded as a temporary media and sent as a customer-service image (the PDF stays a
link), on the console the file's path. Each file is a row of its own: a failed upload is
tried again alone, and nothing goes twice."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import update
from sqlmodel import col, select

from bot.console import PrintingSender
from bot.services import Services
from bot.telegram import close_outbound
from notices.outbox import OutboxDispatcher
from storage.db import transaction
from storage.models import ChannelIdentity, OutboxMessage, Topic
from tests import test_push_telegram, test_wechat
from tests.fakes.telegram_api import FakeBotAPI, RateLimits
from tests.fakes.wechat_api import CUSTOM_SEND, MEDIA_UPLOAD
from tests.qr_decode import decode
from tests.test_printable import pdf_text
from tests.test_push_telegram import Time
from tests.test_wechat import OPENID, Start
from tests.world import ROUTES, World, build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State

# The WeChat tests' fixtures, used here by name.
fake, start = test_wechat.fake, test_wechat.start
CONVENER_CHAT = 3001


@pytest.fixture
async def bot_api(clock: FixedClock) -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(limits=RateLimits(time=Time(clock))) as api:
        yield api


@pytest.fixture
async def services(
    database_url: str, bot_api: FakeBotAPI, tmp_path: Path, engine: object, clock: FixedClock
) -> AsyncIterator[Services]:
    services = test_push_telegram.make(database_url, bot_api, tmp_path, clock)
    yield services
    await close_outbound(services)
    await services.close()


@pytest.fixture
async def world(services: Services, clock: FixedClock) -> World:
    world = await build_world(services.sessions, clock)
    world.lifecycle = services.lifecycle  # the services' listeners
    return world


async def convener_on(world: World, channel: str, address: str) -> int:
    """V1's convener, reached on ``channel`` at ``address`` (and having written just now)."""
    person = world.person("V1", "convener")
    async with transaction(world.sessions) as session:
        await session.exec(
            update(ChannelIdentity)
            .where(col(ChannelIdentity.person_id) == person)
            .values(channel=channel, external_id=address, last_inbound_at=world.clock.now())
        )
    return person


async def published(world: World) -> Topic:
    topic = await world.at(State.APPROVED)
    await world.apply(topic, "publish", world.person("V1", "convener"))
    return await world.reload(topic)


async def rows(services: Services) -> list[OutboxMessage]:
    async with services.sessions() as session:
        found = await session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "notice.printable")
            .order_by(col(OutboxMessage.id))
        )
        return list(found)


async def deliver(services: Services, clock: FixedClock, rounds: int = 6) -> None:
    """Rounds of delivery, the clock moved past each pause (one message a second a chat)."""
    for _ in range(rounds):
        await services.dispatcher().drain()
        clock.advance(timedelta(seconds=2))


async def test_telegram_gets_the_links_then_the_image_then_the_pdf(
    services: Services, bot_api: FakeBotAPI, clock: FixedClock, world: World
) -> None:
    fake = bot_api
    await convener_on(world, "telegram", str(CONVENER_CHAT))
    topic = await published(world)
    await deliver(services, clock)

    to_convener = [
        c.method
        for c in fake.calls
        if c.params.get("chat_id") == CONVENER_CHAT and c.method.startswith("send")
    ]
    assert to_convener[-3:] == ["sendMessage", "sendPhoto", "sendDocument"]
    page = f"https://bot.example.org/t/{topic.number}"
    assert f"PDF：{page}/notice.pdf" in fake.sent_texts(CONVENER_CHAT)[-1]

    ((chat, photo, caption),) = fake.uploads("sendPhoto")
    assert (chat, caption) == (CONVENER_CHAT, "议题公示（图片，可直接打印张贴）")
    assert photo.filename == f"{topic.number}-议题公示.png"
    image = Image.open(io.BytesIO(photo.content))
    assert image.format == "PNG" and image.size == (1654, 2339)
    assert decode(image) == {page}

    ((chat, document, caption),) = fake.uploads("sendDocument")
    assert (chat, caption) == (CONVENER_CHAT, "议题公示（PDF，A4打印）")
    assert document.filename == f"{topic.number}-议题公示.pdf"
    assert document.content_type == "application/pdf"
    text = pdf_text(document.content)
    assert "议题公示" in text and topic.number in text and topic.title in text
    assert "沿线3公里没有公厕" in text  # the background
    assert {r.status for r in await rows(services)} == {"sent"}
    # Drawn once, kept under the topic's version (what the page's download serves too).
    kept = sorted(p.name for p in (services.config.media_dir() / "notices").iterdir())
    assert kept == [f"{topic.number}-topic-v{topic.version}.{s}" for s in ("pdf", "png")]


async def test_a_failed_upload_is_tried_again_alone_and_nothing_goes_twice(
    services: Services, bot_api: FakeBotAPI, clock: FixedClock, world: World
) -> None:
    fake = bot_api
    await convener_on(world, "telegram", str(CONVENER_CHAT))
    topic = await published(world)
    fake.fail("sendDocument", 502)
    await deliver(services, clock)
    links, image, document = await rows(services)
    assert (links.status, image.status) == ("sent", "sent")
    assert (document.status, document.attempts) == ("pending", 1)
    assert "502" in (document.last_error or "") or "Bad Gateway" in (document.last_error or "")

    clock.advance(timedelta(minutes=1))  # past the first backoff
    await deliver(services, clock)
    assert [r.status for r in await rows(services)] == ["sent"] * 3
    assert len(fake.uploads("sendPhoto")) == 1 and len(fake.uploads("sendDocument")) == 1
    assert len(fake.requests("sendDocument", ok_only=False)) == 2
    assert pdf_text(fake.uploads("sendDocument")[0][1].content).count(topic.number) >= 1

    # A refusal that no retry can help (the chat is gone) leaves the row dead, saying why.
    fake.fail("sendPhoto", 400, description="Bad Request: chat not found")
    await world.walk(await world.reload(topic), ROUTES[State.RESULTS_PUBLISHED][3:])
    await deliver(services, clock, rounds=20)  # the cards of the steps between, too
    *_, links, image, document = await rows(services)
    assert (
        links.status == "sent"
        and image.status == "dead"
        and "Chat not found" in (image.last_error or "")
    )
    assert document.status == "sent"  # the next row of the chat went on


async def test_wechat_uploads_the_image_and_sends_it_the_pdf_stays_a_link(
    start: Start, clock: FixedClock
) -> None:
    h = await start()
    h.services.dialogs = h.dialogs.inner  # type: ignore[assignment]
    world = await build_world(h.services.sessions, clock)
    world.lifecycle = h.services.lifecycle
    await convener_on(world, "wechat", OPENID)
    h.fake.script(MEDIA_UPLOAD, errcode=-1, errmsg="system error")  # busy once
    topic = await published(world)
    await h.services.dispatcher().drain()
    links, image = await rows(h.services)  # no PDF row: WeChat cannot carry one
    assert (links.status, image.status, image.attempts) == ("sent", "pending", 1)
    clock.advance(timedelta(minutes=1))
    await h.services.dispatcher().drain()
    assert [r.status for r in await rows(h.services)] == ["sent", "sent"]

    to_convener = [c.json for c in h.fake.calls(CUSTOM_SEND) if c.json["touser"] == OPENID]
    # (the approved topic's card first)
    assert [c["msgtype"] for c in to_convener][-2:] == ["text", "image"]
    assert f"/t/{topic.number}/notice.pdf" in to_convener[-2]["text"]["content"]
    uploads = h.fake.calls(MEDIA_UPLOAD)
    assert len(uploads) == 2 and all(u.query["type"] == "image" for u in uploads)
    ((media_id, upload),) = h.fake.uploaded.items()
    assert to_convener[-1]["image"] == {"media_id": media_id}
    assert upload.filename == f"{topic.number}-topic-v{topic.version}.png"
    assert upload.content_type == "image/png"
    assert decode(Image.open(io.BytesIO(upload.content))) == {
        f"http://127.0.0.1:8080/t/{topic.number}"
    }


async def test_wechat_outside_the_window_the_image_is_undeliverable(
    start: Start, clock: FixedClock
) -> None:
    h = await start()
    world = await build_world(h.services.sessions, clock)
    world.lifecycle = h.services.lifecycle
    await convener_on(world, "wechat", OPENID)
    clock.advance(timedelta(hours=49))  # the convener has not written for two days
    await published(world)
    await h.services.dispatcher().drain()
    links, image = await rows(h.services)
    assert links.status == "sent"  # as a template message, with the link
    assert image.status == "dead" and "customer-service window" in (image.last_error or "")
    assert h.fake.calls(MEDIA_UPLOAD) == []


async def test_the_console_shows_where_the_file_is(services: Services, clock: FixedClock) -> None:
    world = await build_world(services.sessions, clock)
    world.lifecycle = services.lifecycle
    topic = await published(world)
    out = io.StringIO()
    printer = PrintingSender(out, services.notices)
    await OutboxDispatcher(
        services.sessions, {"console": printer}, clock, addresses=["V1:convener"]
    ).drain()
    shown = out.getvalue()
    pdf = services.config.media_dir() / f"notices/{topic.number}-topic-v{topic.version}.pdf"
    assert f"[通知] 议题公示（PDF，A4打印）\n文件：{pdf}" in shown
    assert "议题公示" in pdf_text(pdf.read_bytes())
