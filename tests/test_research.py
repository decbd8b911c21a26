"""Research in the chat (商前调研): the plan (what, when, where) on the convener's card,
the people named with buttons and told, their confirmations, the findings' photos, and
who may not do any of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot.config import load_config
from bot.services import Services, build_services
from dialogs.types import Inbound, Media
from storage.meetings import ResearchParticipant
from storage.models import Attachment, AuditEntry, Topic
from tests.test_review import Reviewer, cards, texts
from tests.world import World, build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State


@pytest.fixture
async def services(
    database_url: str, engine: object, clock: FixedClock, tmp_path: Path
) -> AsyncIterator[Services]:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[dialogs]\nflood_messages = 1000\n', "utf-8"
    )
    services = build_services(load_config(path, env={}), clock=clock)
    yield services
    await services.close()


async def card_button(reviewer: Reviewer, topic: Topic, label: str) -> str:
    [card] = await reviewer.press(f"o:{topic.id}")
    return next(b.payload for b in card.buttons if b.label == label)


async def test_the_plan_the_people_named_their_confirmation_and_the_findings_photos(
    services: Services, clock: FixedClock
) -> None:
    world: World = await build_world(services.sessions, clock)
    world.lifecycle = services.lifecycle
    topic = await world.at(State.PUBLICIZED)
    convener = Reviewer(services.dialogs, "V1:convener")
    await convener.press(await card_button(convener, topic, "安排商前调研"))
    assert "「调研时间」" in texts(await convener.type("走访沿线住户，听取商户意见"))
    assert "「调研地点」" in texts(await convener.type("3月5日上午"))
    [done] = await convener.type("运河步道沿线")
    assert done.text.startswith("已办理「安排商前调研」")
    topic = await world.reload(topic)
    assert topic.facts["plan_research"] == {
        "plan": "走访沿线住户，听取商户意见",
        "research_when": "3月5日上午",
        "research_place": "运河步道沿线",
    }

    [offer] = await convener.press(done.buttons[0].payload)  # 点名调研参加人
    labels = [b.label for b in offer.buttons]
    assert labels[:4] == [
        "☐ V1-member（政协委员）",
        "☐ V1-party（党组织书记）",
        "☐ V1-operator（平台操作人员）",
        "☐ V1-grid（网格员）",
    ]
    [offer] = await convener.press(offer.buttons[0].payload)
    [offer] = await convener.press(offer.buttons[3].payload)
    [offer] = await convener.press(offer.buttons[3].payload)  # the grid worker: off again
    assert [b.label for b in offer.buttons][:4] == [
        "☑ V1-member（政协委员）",
        "☐ V1-party（党组织书记）",
        "☐ V1-operator（平台操作人员）",
        "☐ V1-grid（网格员）",
    ]
    told = texts(await convener.press(offer.buttons[-1].payload))
    assert told.startswith("已通知 1 人参加调研")
    [invited] = [m for m in await cards(world, "V1:member") if m.kind == "research.named"]
    assert (
        "调研内容：走访沿线住户，听取商户意见\n时间：3月5日上午\n地点：运河步道沿线"
        in (invited.body["text"])
    )
    [[label, confirm]] = invited.body["buttons"]
    assert label == "确认参加"

    # Only the person named may confirm; twice is once.
    resident = Reviewer(services.dialogs, "-:resident")
    assert texts(await resident.press(confirm)) == "这个邀请不是发给您的。"
    member = Reviewer(services.dialogs, "V1:member")
    assert texts(await member.press(confirm)).startswith("已确认参加")
    await member.press(confirm)
    confirmations = [m for m in await cards(world, "V1:convener") if m.kind == "research.confirmed"]
    assert len(confirmations) == 1 and "V1-member 已确认参加" in confirmations[0].body["text"]
    async with services.sessions() as session:
        [row] = (await session.exec(select(ResearchParticipant))).all()
    assert row.confirmed_at == clock.now()

    # The findings, then their photos from the chat.
    await convener.press(await card_button(convener, topic, "上传调研成果"))
    [recorded] = await convener.type("走访32户，28户支持")
    await convener.press(recorded.buttons[0].payload)  # 上传调研照片和文件
    for n in range(2):
        got = await services.dialogs.handle(
            Inbound("console", "V1:convener", "image", media=Media(f"photo-{n}", "image/jpeg"))
        )
        assert f"调研成果现有 {n + 1} 个照片、语音或文件" in texts(got)
    report = Media("doc-1", "application/pdf", size=88123, name="调研报告.pdf")
    got = await services.dialogs.handle(Inbound("console", "V1:convener", "file", media=report))
    assert "调研成果现有 3 个照片、语音或文件" in texts(got)
    # Oversized (as the platform says before any download): refused at once, nothing kept.
    huge = Media("doc-2", "application/zip", size=30 * 1024 * 1024, name="全部照片.zip")
    got = await services.dialogs.handle(Inbound("console", "V1:convener", "file", media=huge))
    assert texts(got).startswith("这个文件有 30.0 MB，超过了 10 MB 的上限，没有保存")
    assert texts(await convener.type("好的")).startswith("这里只收照片、语音和文件")
    assert texts(await convener.press("y:done")) == "调研成果的照片、语音和文件已保存，共 3 个。"
    async with services.sessions() as session:
        kept = (await session.exec(select(Attachment))).all()
    assert [(a.topic_id, a.kind) for a in kept] == [(topic.id, "image")] * 2 + [(topic.id, "file")]
    assert kept[2].text == "调研报告.pdf"
    # Outside the upload a file is not taken, and said so.
    got = await services.dialogs.handle(Inbound("console", "V1:convener", "file", media=report))
    assert "文件" in texts(got) and "调研成果" not in texts(got)


async def test_only_the_rooms_convener_or_operator_may_name_people_or_upload(
    services: Services, clock: FixedClock
) -> None:
    world: World = await build_world(services.sessions, clock)
    topic = await world.at(State.RESEARCHING)
    for address in ("-:resident", "V1:member", "V2:convener"):
        someone = Reviewer(services.dialogs, address)
        for payload in (f"yn:{topic.id}", f"yf:{topic.id}"):
            refused = texts(await someone.press(payload))
            assert refused.startswith("只有本议事室的召集人或平台操作人员")
    async with services.sessions() as session:
        audits = (
            await session.exec(select(AuditEntry).where(AuditEntry.action == "research.refused"))
        ).all()
        assert len(audits) == 6
        assert (await session.exec(select(ResearchParticipant))).all() == []
    # The findings' photos wait for the findings themselves.
    operator = Reviewer(services.dialogs, "V1:operator")
    await operator.press(f"yf:{topic.id}")
    got = await services.dialogs.handle(
        Inbound("console", "V1:operator", "image", media=Media("photo", "image/jpeg"))
    )
    assert texts(got) == "请先「上传调研成果」（文字），再补充照片和文件。"
    async with services.sessions() as session:
        assert (await session.exec(select(Attachment))).all() == []  # nothing kept
