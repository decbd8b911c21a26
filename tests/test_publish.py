"""Publishing (公示) from the chat: the card the convener gets once a topic is approved, the
day suggestions close (default seven days), the photos the public may see, the meeting a
week after publication at the earliest, and publishing the results."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot.config import load_config
from bot.services import Services, build_services
from storage.db import make_session_factory, transaction
from storage.models import Attachment, OutboxMessage, Topic
from tests.test_review import Reviewer, button, cards, texts
from tests.world import ROUTES, World, build_world
from workflow.clock import CHINA, FixedClock
from workflow.errors import InvalidField
from workflow.lifecycle import State


@pytest.fixture
async def world(engine, clock: FixedClock) -> World:
    return await build_world(make_session_factory(engine), clock)


@pytest.fixture
async def services(
    database_url: str, world: World, clock: FixedClock, tmp_path: Path
) -> AsyncIterator[Services]:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[dialogs]\nflood_messages = 1000\n', "utf-8"
    )
    services = build_services(load_config(path, env={}), clock=clock)
    world.lifecycle = services.lifecycle
    yield services
    await services.close()


async def photos(world: World, count: int, *, status: str = "stored") -> list[int]:
    ids = []
    async with transaction(world.sessions) as session:
        for n in range(count):
            row = Attachment(
                kind="image",
                channel="console",
                source_ref=f"p{n}",
                status=status,
                storage_key=f"t/p{n}.jpg",
                content_type="image/jpeg",
                uploaded_by_id=world.person("-", "resident"),
                created_at=world.clock.now(),
            )
            session.add(row)
            await session.flush()
            assert row.id is not None
            ids.append(row.id)
    return ids


async def approved(world: World, attachment_ids: list[int] | None = None) -> Topic:
    topic = await world.open(
        "V1", attachment_ids=attachment_ids or [], uploader_id=world.person("-", "resident")
    )
    return await world.walk(topic, ROUTES[State.APPROVED])


async def test_the_convener_gets_the_approved_topics_card_and_publishes_with_chosen_photos(
    world: World, services: Services
) -> None:
    first, second, third = await photos(world, 3)
    topic = await approved(world, [first, second, third])
    card = (await cards(world, "V1:convener"))[-1]
    assert card.kind == "topic.approved" and "【待公示】" in card.body["text"]
    convener = Reviewer(services.dialogs, "V1:convener")

    asked = await convener.press(button(card, "公示议题"))
    close = date(2026, 3, 9)  # the clock's day, 2026-03-02, and seven days
    assert asked[0].text.startswith("如需填写「征集建议截止日期」请直接发送")
    assert [b.label for b in asked[0].buttons] == ["按默认：3月9日截止（7天后）"]

    asked = await convener.press(asked[0].buttons[0].payload)
    assert "本议题有 3 张照片" in asked[0].text
    assert [b.label for b in asked[0].buttons] == [
        "☐ 第1张",
        "☐ 第2张",
        "☐ 第3张",
        "确定",
        "不公开照片",
    ]
    for n in (0, 2, 0, 1):  # the first on, the third on, the first off again, the second on
        asked = await convener.press(asked[0].buttons[n].payload)
    assert [b.label for b in asked[0].buttons][:3] == ["☐ 第1张", "☑ 第2张", "☑ 第3张"]
    done = texts(await convener.press(asked[0].buttons[3].payload))
    assert done.startswith("已办理「公示议题」") and "当前状态：公示征求建议中" in done

    topic = await world.reload(topic)
    assert topic.state == State.PUBLICIZED
    assert topic.published_at == world.clock.now()
    assert topic.facts["publish"] == {
        "suggestions_close": close.isoformat(),
        "photos": [second, third],
    }
    async with world.sessions() as session:
        told = (
            await session.exec(
                select(OutboxMessage).where(
                    OutboxMessage.kind == "topic.publicized",
                    OutboxMessage.person_id == world.person("-", "resident"),
                )
            )
        ).one()
    assert "已在“码上建议”公示，2026-03-09 前欢迎邀请邻居一起提建议" in told.body["text"]
    printable, image, document = (await cards(world, "V1:convener"))[-3:]
    assert {printable.kind, image.kind, document.kind} == {"notice.printable"}
    page = f"http://127.0.0.1:8080/t/{topic.number}"
    assert f"图片：{page}/notice.png\nPDF：{page}/notice.pdf" in printable.body["text"]
    # Then the files themselves, one a message, kept under the topic's version.
    assert [(m.body["text"], m.body["file"]) for m in (image, document)] == [
        (
            "议题公示（图片，可直接打印张贴）",
            {
                "key": f"notices/{topic.number}-topic-v{topic.version}.png",
                "filename": f"{topic.number}-议题公示.png",
                "kind": "image",
            },
        ),
        (
            "议题公示（PDF，A4打印）",
            {
                "key": f"notices/{topic.number}-topic-v{topic.version}.pdf",
                "filename": f"{topic.number}-议题公示.pdf",
                "kind": "document",
            },
        ),
    ]


async def test_a_close_date_typed_is_checked_and_no_photos_means_no_question(
    world: World, services: Services
) -> None:
    await photos(world, 1, status="pending")  # not downloaded yet: not offered
    topic = await approved(world)
    convener = Reviewer(services.dialogs, "V1:convener")
    await convener.press(button((await cards(world, "V1:convener"))[-1], "公示议题"))
    refused = texts(await convener.type("2026-03-02"))  # today
    assert "「征集建议截止日期」须晚于今天。" in refused
    assert "征集建议截止日期" in refused  # asked again
    refused = texts(await convener.type("三月十号"))
    assert "「征集建议截止日期」不是有效的日期。" in refused
    done = texts(await convener.type("2026-03-16"))
    assert done.startswith("已办理「公示议题」")  # no photos: not asked about them
    topic = await world.reload(topic)
    assert topic.facts["publish"] == {"suggestions_close": "2026-03-16"}


async def test_only_the_topics_own_stored_photos_may_be_published(world: World) -> None:
    [own] = await photos(world, 1)
    [stray] = await photos(world, 1)  # another resident's upload, on no topic
    topic = await approved(world, [own])
    convener = world.person("V1", "convener")
    with pytest.raises(InvalidField, match="只能从本议题的照片中选择"):
        await world.apply(topic, "publish", convener, photos=[own, stray])
    with pytest.raises(InvalidField, match="只能从本议题的照片中选择"):
        await world.apply(topic, "publish", convener, photos="1e9")
    assert (await world.reload(topic)).state == State.APPROVED
    await world.apply(topic, "publish", convener, photos=f"{own},{own}")
    assert (await world.reload(topic)).facts["publish"]["photos"] == [own]


async def test_the_meeting_is_held_a_week_after_publication_at_the_earliest(
    world: World,
) -> None:
    topic = await approved(world)
    convener = world.person("V1", "convener")
    # Suggestions close the next day, so that the week is what holds the meeting back.
    await world.apply(topic, "publish", convener, suggestions_close="2026-03-03")
    topic = await world.walk(topic, ["plan_research", "record_findings"])
    published = topic.published_at
    assert published is not None
    convener = world.person("V1", "convener")
    too_early = (published + timedelta(days=7) - timedelta(minutes=1)).astimezone(CHINA)
    with pytest.raises(InvalidField, match="不得早于 2026-03-09 10:00"):
        await world.apply(
            topic, "schedule_meeting", convener, time=too_early.isoformat(), place="村部"
        )
    assert (await world.reload(topic)).state == State.RESEARCHING
    week = (published + timedelta(days=7)).astimezone(CHINA)
    await world.apply(topic, "schedule_meeting", convener, time=week.isoformat(), place="村部")
    assert (await world.reload(topic)).state == State.MEETING_SCHEDULED


async def test_results_are_published_from_the_conveners_card(
    world: World, services: Services
) -> None:
    topic = await world.open("V1")
    steps = ROUTES[State.OUTCOME_APPROVED]
    topic = await world.walk(topic, steps[: steps.index("record_findings") + 1])
    world.clock.advance(timedelta(days=8))
    topic = await world.walk(topic, steps[steps.index("record_findings") + 1 :])
    card = (await cards(world, "V1:convener"))[-1]
    assert card.kind == "topic.outcome_approved"
    assert "由镇城管科落实" in card.body["text"]
    convener = Reviewer(services.dialogs, "V1:convener")
    done = texts(await convener.press(button(card, "公示结果")))
    assert done.startswith("已办理「公示结果」")
    topic = await world.reload(topic)
    assert topic.state == State.RESULTS_PUBLISHED
    assert topic.results_published_at == world.clock.now()
    printable, image, document = (await cards(world, "V1:convener"))[-3:]
    assert printable.kind == "notice.printable" and "协商结果已公示" in printable.body["text"]
    assert image.body["file"]["filename"] == f"{topic.number}-结果公示.png"
    assert document.body["file"]["key"].startswith(f"notices/{topic.number}-results-v")
    assert f"/t/{topic.number}/notice.pdf?kind=results" in printable.body["text"]
