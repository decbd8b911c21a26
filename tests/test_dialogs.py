"""The dialogs, through the console channel and ``Dialogs.handle`` (channel-agnostic)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, func, select

from bot.config import load_config
from bot.console import chat
from bot.services import Services, build_services
from dialogs.throttle import LocalThrottle
from dialogs.types import Inbound, Location, Media, Reply, room_payload
from storage.db import transaction
from storage.models import Attachment, ChannelIdentity, DialogState, Topic
from storage.models import Person as PersonRow
from tests.world import ROOMS
from workflow.clock import FixedClock
from workflow.lifecycle import Role
from workflow.permissions import load_actor
from workflow.rooms import import_rooms, parse_rooms_csv


@pytest.fixture
async def services(
    database_url: str,
    engine,
    clock: FixedClock,
    tmp_path: Path,
) -> AsyncIterator[Services]:
    path = tmp_path / "c.toml"
    # Tests type faster than people: the flood limit has its own test.
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[media]\ndir = "media"\n'
        "[dialogs]\nflood_messages = 1000\n",
        "utf-8",
    )
    services = build_services(load_config(path, env={}), clock=clock)
    async with transaction(services.sessions) as session:
        await import_rooms(session, parse_rooms_csv(ROOMS.encode()), clock.now())
    yield services
    await services.close()


class Person:
    """Someone typing into the bot on one channel."""

    def __init__(self, services: Services, ref: str = "u1", channel: str = "console") -> None:
        self.services, self.ref, self.channel = services, ref, channel
        self.count = 0

    async def send(self, kind: str = "text", text: str = "", **kw: object) -> list[Reply]:
        self.count += 1
        kw.setdefault("message_id", f"{self.ref}-{self.count}")
        return await self.services.dialogs.handle(
            Inbound(self.channel, self.ref, kind, text=text, **kw)
        )  # type: ignore[arg-type]

    async def say(self, text: str) -> str:
        return "\n".join(r.text for r in await self.send("text", text))

    async def scan(self, room: str) -> list[Reply]:
        return await self.send("start", payload=room_payload(room))


async def topics(services: Services) -> list[Topic]:
    async with services.sessions() as session:
        return list(await session.exec(select(Topic).order_by(col(Topic.id))))


async def submit(
    person: Person, title: str = "路灯坏了", description: str = "3号楼前路灯不亮"
) -> str:
    await person.scan("V1")
    await person.say("提议题")
    await person.say(title)
    await person.say(description)
    await person.say("下一步")
    await person.say("跳过")
    return await person.say("1")


async def test_scan_submit_and_receipt(services: Services) -> None:
    person = Person(services)
    [welcome] = await person.scan("V1")
    assert welcome.text.startswith("欢迎来到一村议事室")
    assert [b.payload for b in welcome.buttons] == ["m:submit", "m:mine", "m:room"]
    receipt = await submit(person, title="路灯不亮😢 ＡＢＣ 臺灣")
    assert "编号：D1-2026-000001" in receipt
    assert "召集人将在3月9日前完成初审" in receipt  # Mon 03-02 + 5 working days
    [topic] = await topics(services)
    assert (topic.title, topic.background, topic.source) == (
        "路灯不亮😢 ＡＢＣ 臺灣",
        "3号楼前路灯不亮",
        "public",
    )
    assert topic.contact_phone is None


async def test_console_chat_whole_submission(services: Services) -> None:
    lines = iter(["1", "排水沟堵了", "下雨就积水，希望清理", "1", "13812345678", "1", ""])
    out = io.StringIO()
    assert await chat(services, "V1", "tester", read_line=lambda: next(lines), out=out) == 0
    text = out.getvalue()
    assert "欢迎来到一村议事室" in text and "  1. 提议题" in text
    assert "联系电话：13812345678" in text
    assert "编号：D1-2026-000001" in text
    [topic] = await topics(services)
    assert (topic.title, topic.contact_phone) == ("排水沟堵了", "13812345678")


async def test_follow_ups_reach_the_console_person(services: Services) -> None:
    person = Person(services, "tester")
    await submit(person)
    [topic] = await topics(services)
    async with transaction(services.sessions) as session:
        from storage.models import Person as PersonRow
        from storage.models import RoleGrant

        convener = PersonRow(display_name="召集人")
        session.add(convener)
        await session.flush()
        assert convener.id is not None and topic.room_id
        session.add(RoleGrant(person_id=convener.id, room_id=topic.room_id, role=Role.CONVENER))
        await session.flush()
        fresh = await session.get(Topic, topic.id)
        assert fresh is not None
        await services.lifecycle.apply(
            session,
            fresh,
            "decline",
            await load_actor(session, convener.id),
            reason="属个人纠纷",
            contact_record="电话",
        )
    out = io.StringIO()
    await chat(services, "V1", "tester", read_line=lambda: "", out=out)
    assert "[通知] 您的议题「路灯坏了」（D1-2026-000001）经初审不予受理。\n理由：属个人纠纷" in (
        out.getvalue()
    )


async def test_a_restart_mid_dialog_resumes(
    services: Services, database_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    person = Person(services)
    await person.scan("V1")
    await person.say("提议题")
    await person.say("公园长椅坏了")
    path = tmp_path / "c2.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    restarted = build_services(load_config(path, env={}), clock=clock)
    try:
        person.services = restarted
        assert (await person.say("长椅断了两根横条")).startswith("可以补充照片")
        await person.say("下一步")
        await person.say("跳过")
        assert "议题已提交" in await person.say("确认")
    finally:
        await restarted.close()
    [topic] = await topics(services)
    assert (topic.title, topic.background) == ("公园长椅坏了", "长椅断了两根横条")


async def test_an_idle_dialog_expires_kindly(services: Services, clock: FixedClock) -> None:
    person = Person(services)
    await person.scan("V1")
    await person.say("提议题")
    await person.say("公园长椅坏了")
    clock.advance(timedelta(minutes=31))
    answer = await person.say("长椅断了")
    assert answer.startswith("由于超过 30 分钟没有操作，刚才填写的内容已失效")
    assert await topics(services) == []
    assert (await person.say("提议题")).startswith("请用一句话写下议题标题")  # room remembered


async def test_wrong_input_gets_a_clear_answer(services: Services) -> None:
    person = Person(services)
    assert (await person.say("你好")).startswith("没有找到名称含“你好”的议事室")
    assert (await person.say("很" * 5000)).startswith("内容太长：最多 30 个字")
    await person.scan("V1")
    await person.say("提议题")
    assert (
        await person.say("长" * 41)
        == "内容太长：最多 40 个字，您发送了 41 个字，请精简后重新发送。"
    )
    [reply] = await person.send("unsupported", unsupported="video")
    assert reply.text == "暂不支持视频。可以发送文字、照片、语音或位置。"
    [reply] = await person.send("image", media=Media("m1"))
    assert reply.text == "请先用文字发送议题标题。"
    await person.say("标题")
    await person.say("描述")
    await person.say("下一步")
    assert (await person.say("12345")).startswith("电话号码格式不正确")
    assert (await person.say("+86 138-1234-5678")).startswith("请确认您的议题")
    assert (await person.send("button", payload="t:999999"))[
        0
    ].text == "找不到这个议题，或您无权查看。"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("１３９１２３４５６７８", "13912345678"),  # full-width, as a Chinese keyboard types it
        ("139 1234 5678", "13912345678"),
        ("+86 139-1234-5678", "13912345678"),
        ("0517-83661234", "0517-83661234"),
        ("051783661234", "0517-83661234"),
        ("(0517)83661234", "0517-83661234"),
        ("（０５１７）８３６６１２３４", "0517-83661234"),
        ("0517 － 8366 1234", "0517-83661234"),
        ("010-6512345", "010-6512345"),
        ("01065123456", "010-65123456"),
    ],
)
async def test_a_contact_number_is_normalised_before_it_is_checked(
    services: Services, typed: str, stored: str
) -> None:
    person = Person(services)
    await person.scan("V1")
    for text in ("提议题", "路灯坏了", "3号楼前路灯不亮", "下一步"):
        await person.say(text)
    assert f"联系电话：{stored}" in await person.say(typed)
    await person.say("1")
    [topic] = await topics(services)
    assert topic.contact_phone == stored


@pytest.mark.parametrize(
    "typed", ["12345678901", "1391234567", "0517-836612", "0517-836612345", "5178366123", "电话"]
)
async def test_anything_else_is_refused_naming_both_kinds_of_number(
    services: Services, typed: str
) -> None:
    person = Person(services)
    await person.scan("V1")
    for text in ("提议题", "路灯坏了", "3号楼前路灯不亮", "下一步"):
        await person.say(text)
    assert await person.say(typed) == (
        "电话号码格式不正确，请发送 11 位手机号，或带区号的固定电话（如 0517-83661234），"
        "或点“跳过”。"
    )
    assert await topics(services) == []


async def test_room_search_by_name(services: Services) -> None:
    person = Person(services)
    [found] = await person.send("text", "二村")
    assert found.text == "找到以下议事室，请选择："
    assert [(b.label, b.payload) for b in found.buttons] == [("二村议事室", "room:V2")]
    assert (await person.say("1")).startswith("欢迎来到二村议事室")
    [unknown] = await person.scan("NOPE")
    assert unknown.text.startswith("这个二维码对应的议事室不存在")


async def test_photos_voice_and_location_are_kept(services: Services) -> None:
    person = Person(services)
    await person.scan("V1")
    await person.say("提议题")
    await person.say("下水道堵塞")
    [voice] = await person.send("voice", media=Media("v1", "audio/amr", "每个月都堵，污水外溢"))
    assert voice.text.startswith("可以补充照片")  # recognised speech became the description
    assert (await person.send("image", media=Media("p1", "image/jpeg")))[0].text.startswith(
        "已收到照片（共 2 个附件）"
    )
    loc = await person.send("location", location=Location(33.6, 119.0, "荷花路12号"))
    assert loc[0].text.startswith("已收到位置：荷花路12号")
    await person.say("下一步")
    await person.say("跳过")
    await person.say("确认")
    [topic] = await topics(services)
    assert topic.background == "每个月都堵，污水外溢"
    assert topic.location == {"latitude": 33.6, "longitude": 119.0, "label": "荷花路12号"}
    async with services.sessions() as session:
        rows = list(await session.exec(select(Attachment).order_by(col(Attachment.id))))
    assert [(a.kind, a.source_ref, a.topic_id, a.status, a.text) for a in rows] == [
        ("voice", "v1", topic.id, "pending", "每个月都堵，污水外溢"),
        ("image", "p1", topic.id, "pending", None),
    ]


class FakeFetcher:
    def __init__(self, failures: int = 0) -> None:
        self.failures, self.calls = failures, []

    async def fetch(self, ref: str) -> tuple[bytes, str]:
        self.calls.append(ref)
        if len(self.calls) <= self.failures:
            raise ConnectionError("platform down")
        return b"\x89PNG fake " + ref.encode(), "image/png"


async def test_media_are_downloaded_and_stored_with_retries(
    services: Services, clock: FixedClock
) -> None:
    person = Person(services)
    await person.scan("V1")
    await person.say("提议题")
    await person.say("路面塌陷")
    await person.say("学校门口路面塌陷")
    await person.send("image", media=Media("p1", "image/jpeg"))
    fetcher = FakeFetcher(failures=1)
    services.fetchers["console"] = fetcher
    downloader = services.media_downloader()
    assert await downloader.run_once() == 0  # fails once, stays pending
    assert await downloader.run_once() == 0  # not retried at once
    assert fetcher.calls == ["p1"]
    clock.advance(timedelta(minutes=1))
    assert await downloader.run_once() == 1
    assert await downloader.run_once() == 0
    async with services.sessions() as session:
        [row] = list(await session.exec(select(Attachment)))
    assert (row.status, row.attempts, row.size_bytes) == ("stored", 2, len(b"\x89PNG fake p1"))
    assert row.storage_key.startswith("2026/03/") and row.storage_key.endswith(".png")
    assert await services.media_store.get(row.storage_key) == b"\x89PNG fake p1"


async def test_a_retried_message_has_exactly_one_effect(services: Services) -> None:
    person = Person(services)
    await person.scan("V1")
    for text in ("提议题", "重复提交测试", "描述", "下一步", "跳过"):
        await person.say(text)
    first = await person.send("text", "确认", message_id="same")
    again = await person.send("text", "确认", message_id="same")
    assert first == again and "议题已提交" in first[0].text
    assert len(await topics(services)) == 1


async def test_my_topics_and_withdraw(services: Services) -> None:
    person = Person(services)
    await submit(person, title="第一个")
    await submit(person, title="第二个")
    [listing] = await person.send("text", "我的议题")
    assert [b.label for b in listing.buttons] == ["第二个（待初审）", "第一个（待初审）"]
    [detail] = await person.send("button", payload=listing.buttons[1].payload)
    assert "D1-2026-000001｜第一个" in detail.text and "提交议题" in detail.text
    assert [b.label for b in detail.buttons] == ["撤回议题", "返回列表"]
    [ask] = await person.send("button", payload=detail.buttons[0].payload)
    assert ask.text == "确定撤回议题“第一个”吗？撤回后不再办理。"
    assert (await person.say("1")) == "议题“第一个”已撤回。"
    states = {t.title: t.state for t in await topics(services)}
    assert states == {"第一个": "withdrawn", "第二个": "submitted"}
    # Someone else cannot open or withdraw my topic with a forged button.
    other = Person(services, "u2")
    [refused] = await other.send("button", payload=ask.buttons[0].payload.replace("1", "2"))
    assert refused.text == "找不到这个议题，或您无权查看。"


async def test_one_persons_flood_is_throttled_without_slowing_others(services: Services) -> None:
    services.dialogs.throttle = LocalThrottle(10, 10.0)
    flooder, neighbour = Person(services, "flood"), Person(services, "calm")
    answers = [await flooder.send("text", "刷屏") for _ in range(30)]
    assert sum(1 for a in answers if a and a[0].text != "您发送得太快了，请稍等片刻再发。") == 10
    # Every refused message says so (never dropped in silence); none was handled.
    assert answers[10:] == [[Reply("您发送得太快了，请稍等片刻再发。")]] * 20
    assert (await neighbour.scan("V1"))[0].text.startswith("欢迎来到一村议事室")


async def test_dialog_state_lives_in_the_database(services: Services) -> None:
    person = Person(services)
    await person.scan("V1")
    await person.say("提议题")
    async with services.sessions() as session:
        count = (await session.exec(select(func.count()).select_from(DialogState))).one()
        state = (await session.exec(select(DialogState))).one()
    assert count == 1
    assert (state.flow, state.step, state.data["room"]) == ("submit_topic", "title", "V1")


async def test_an_identity_made_elsewhere_starts_its_first_dialog(
    services: Services, clock: FixedClock
) -> None:
    """An identity bound outside the chat (e.g. by an import) has no dialog state yet: its
    first message creates one for the same person and opens the WeChat-style window."""
    async with transaction(services.sessions) as session:
        known = PersonRow(display_name="王主任")
        session.add(known)
        await session.flush()
        session.add(
            ChannelIdentity(
                person_id=known.id, channel="console", external_id="wang", created_at=clock.now()
            )
        )
    person = Person(services, ref="wang")
    [welcome] = await person.scan("V1")
    assert welcome.text.startswith("欢迎来到一村议事室")
    await person.say("提议题")
    clock.advance(timedelta(seconds=30))
    await person.say("灯不亮")
    async with services.sessions() as session:
        [identity] = await session.exec(select(ChannelIdentity))
        [state] = await session.exec(select(DialogState))
        people = (await session.exec(select(func.count()).select_from(PersonRow))).one()
    assert (identity.person_id, people) == (known.id, 1)
    # The window's start is kept to the minute: the message 30 s later did not move it.
    assert identity.last_inbound_at == clock.now() - timedelta(seconds=30)
    assert (state.flow, state.step) == ("submit_topic", "description")
    assert state.data["draft"]["title"] == "灯不亮"


async def test_typed_menu_words_press_their_buttons_and_a_miss_keeps_them(
    services: Services,
) -> None:
    """Issue 11: typing an offered label (or the start of one) is pressing its button."""
    person = Person(services)
    await person.scan("V1")
    assert (await person.say("换议事室")).startswith("请先选择议事室")
    [found] = await person.send("text", "村")  # a search: the rooms found, as buttons
    assert len(found.buttons) >= 2
    assert (await person.say("？？")).startswith("没有找到名称含")  # no step taken
    [welcome] = await person.send("text", found.buttons[1].label[:-1])
    assert welcome.text.startswith(f"欢迎来到{found.buttons[1].label}")
    assert (await person.say("哈哈")).startswith("没有看懂")
    assert (await person.say("1")).startswith("请用一句话写下议题标题")  # 提议题, kept
