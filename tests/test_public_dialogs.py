"""码上建议 in the chat, through the real dialogs (console channel, ``Dialogs.handle``):
browsing a room's publicized topics, a topic's view, 点赞, 关注, 提建议, 举报 and the
convener's moderation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.config import load_config
from bot.services import Services, build_services
from dialogs.types import Inbound, Reply, room_payload
from storage.models import AuditEntry, OutboxMessage, Topic
from storage.participation import Follow, Like, Suggestion
from tests.world import World, build_world
from workflow.clock import FixedClock
from workflow.lifecycle import Role, State
from workflow.payloads import START_TOPIC


@pytest.fixture
async def services(
    database_url: str, engine: object, clock: FixedClock, tmp_path: Path
) -> AsyncIterator[Services]:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[media]\ndir = "media"\n'
        '[dialogs]\nflood_messages = 1000\n[moderation]\nsensitive_words = ["违禁词"]\n',
        "utf-8",
    )
    services = build_services(load_config(path, env={}), clock=clock)
    yield services
    await services.close()


@pytest.fixture
async def world(services: Services, clock: FixedClock) -> World:
    return await build_world(services.sessions, clock)


class Person:
    """Someone on the console; ``ref`` "V1:convener" is the world's convener of V1."""

    def __init__(self, services: Services, ref: str) -> None:
        self.services, self.ref, self.count = services, ref, 0
        self.last: list[Reply] = []

    async def send(self, kind: str = "text", text: str = "", payload: str = "") -> list[Reply]:
        self.count += 1
        inbound = Inbound(
            "console",
            self.ref,
            kind,
            text=text,
            payload=payload,
            message_id=f"{self.ref}-{self.count}",
        )  # type: ignore[arg-type]
        self.last = await self.services.dialogs.handle(inbound)
        return self.last

    async def press(self, label: str) -> list[Reply]:
        """Press the button labelled ``label`` on the newest reply that shows it."""
        return await self.send("button", payload=self.button(label))

    def button(self, label: str) -> str:
        for reply in reversed(self.last):
            for b in reply.buttons:
                if b.label == label:
                    return b.payload
        raise AssertionError(f"no {label!r} in {[b.label for r in self.last for b in r.buttons]}")

    def labels(self) -> list[str]:
        return [b.label for b in self.last[-1].buttons]

    def text(self) -> str:
        return "\n".join(r.text for r in self.last)


async def _rows(services: Services, table: type) -> list:
    async with services.sessions() as session:
        return list((await session.exec(select(table).order_by(col(table.id)))).all())


async def _outbox(services: Services, kind: str) -> list[OutboxMessage]:
    return [r for r in await _rows(services, OutboxMessage) if r.kind == kind]


async def test_scan_browse_like_follow_suggest_unfollow(services: Services, world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    li = Person(services, "li")
    await li.send("start", payload=room_payload("V1"))
    assert li.labels() == ["提议题", "公示议题", "我的议题", "换议事室"]
    await li.press("公示议题")
    assert "一村议事室的公示议题共 1 个" in li.text()
    assert li.labels() == ["运河步道增设公厕（公示征求建议中）", "关注本议事室"]
    await li.press("运河步道增设公厕（公示征求建议中）")
    assert "【公示征求建议中】" in li.text() and "沿线3公里没有公厕" in li.text()
    assert "点赞 0 · 关注 0 · 建议 0" in li.text()
    assert li.labels() == ["提建议", "点赞", "关注", "公示议题列表"]

    like = li.button("点赞")
    await li.press("点赞")
    assert li.text().startswith("已点赞") and "点赞 1 ·" in li.text()
    assert "取消点赞" in li.labels()
    await li.send("button", payload=like)  # the same button again: a new message
    assert li.text().startswith("您已经点过赞了") and "点赞 1 ·" in li.text()
    assert [(r.active, r.topic_id) for r in await _rows(services, Like)] == [(True, topic.id)]

    await li.press("关注")
    assert "已关注“运河步道增设公厕”" in li.text() and "关注 1 ·" in li.text()
    assert "取消关注" in li.labels()

    await li.press("提建议")
    assert "不超过 500 个字" in li.text()
    await li.send(text="长" * 501)
    assert "最多 500 个字，您输入了 501 个字" in li.text()
    await li.send(text="建议在步道两端各建一座")
    assert li.text().startswith("您的建议已发布") and "建议 1" in li.text()
    await li.send(text="这句不再是建议")  # the flow is over
    assert len(await _rows(services, Suggestion)) == 1

    # The off-button as a push carries it works in the middle of another dialog.
    await li.send("start", payload=room_payload("V1"))
    await li.press("提议题")
    await li.send("button", payload=f"ft:{topic.id}:0")
    assert "已取消关注“运河步道增设公厕”" in li.text()
    (follow,) = await _rows(services, Follow)
    assert follow.ended_at == world.clock.now()
    await li.send(text="路灯坏了")  # still in 提议题: the title was taken
    assert "请详细描述情况" in li.text()

    # The room's follow, and its off-button from within the same dialog.
    room = world.rooms["V1"]
    await li.send("button", payload=f"fr:{room}:1")
    assert li.text().startswith("已关注一村议事室") and "取消关注本议事室" in li.labels()
    await li.send("button", payload=f"fr:{room}:0")
    assert li.text().startswith("已取消关注一村议事室")
    follows = await _rows(services, Follow)
    assert [(f.room_id, f.ended_at is not None) for f in follows] == [(None, True), (room, True)]
    await li.send(text="3号楼前路灯不亮")
    assert "可以补充照片" in li.text()  # 提议题 went on


async def test_a_forged_follow_of_a_topic_not_public_learns_nothing(
    services: Services, world: World
) -> None:
    submitted = await world.open("V1", title="不公开的标题")
    li = Person(services, "li")
    await li.send("button", payload=f"ft:{submitted.id}:1")
    assert "不公开的标题" not in li.text() and li.text().startswith("已关注这个议题")
    withdrawn = await world.at(State.WITHDRAWN)
    await li.send("button", payload=f"ft:{withdrawn.id}:1")
    assert "不能进行「关注」" in li.text()


async def test_a_topics_link_opens_it_in_its_room(services: Services, world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    li = Person(services, "li")
    await li.send("start", payload=START_TOPIC.build(topic.number))
    assert "运河步道增设公厕" in li.text() and "提建议" in li.labels()
    await li.send(text="菜单")
    assert li.text().startswith("欢迎来到一村议事室")
    approved = await world.at(State.APPROVED)
    await li.send("start", payload=START_TOPIC.build(approved.number))
    assert "还没有公示" in li.text()
    await li.send("button", payload=f"pt:{approved.id}")
    assert "还没有公示" in li.text()
    await li.send("button", payload=f"lk:{approved.id}:1")
    assert "还没有公示" in li.text()
    assert await _rows(services, Like) == []


async def test_a_held_suggestion_goes_to_the_convener_who_restores_it(
    services: Services, world: World
) -> None:
    topic = await world.at(State.PUBLICIZED)
    li = Person(services, "li")
    await li.send("button", payload=f"sg:{topic.id}")
    await li.send(text="这里有违禁词")
    assert "待审核" in li.text()
    await li.press("返回议题")
    assert "建议 0" in li.text() and "您有 1 条建议待审核" in li.text()
    other = Person(services, "zhang")
    await other.send("button", payload=f"pt:{topic.id}")
    assert "待审核" not in other.text() and "看建议" not in other.labels()
    (notice,) = await _outbox(services, "suggestion.held_notice")
    assert notice.address == "V1:convener" and "违禁词" in notice.body["text"]
    decide = notice.body["buttons"][0][1]

    outsider = Person(services, "V2:convener")
    await outsider.send("button", payload=decide)
    assert "只有该议题所在议事室的召集人" in outsider.text()

    convener = Person(services, "V1:convener")
    await convener.send("start", payload=room_payload("V1"))
    assert "待审建议" in convener.labels()
    await convener.press("待审建议")
    await convener.press("这里有违禁词")
    assert "含敏感词“违禁词”" in convener.text()
    assert convener.labels() == ["公开", "隐藏"]
    await convener.press("公开")
    assert "理由" in convener.text()
    await convener.send(text="误判，内容正常")
    assert convener.text().startswith("已公开")
    (s,) = await _rows(services, Suggestion)
    assert (s.status, s.moderation_reason) == ("visible", "误判，内容正常")
    (told,) = await _outbox(services, "suggestion.restored")
    assert told.address == "li" and "已经公开" in told.body["text"]
    audits = [a.action for a in await _rows(services, AuditEntry)]
    assert audits == ["suggestion.hold", "suggestion.restore"]
    await convener.press("待审建议")
    assert "目前没有待您审核的建议" in convener.text()


async def test_three_reports_hide_and_the_convener_decides(
    services: Services, world: World
) -> None:
    topic = await world.at(State.PUBLICIZED)
    author = Person(services, "li")
    await author.send("button", payload=f"sg:{topic.id}")
    await author.send(text="某某是坏人")
    await author.send("button", payload=f"sl:{topic.id}:1")
    assert "某某是坏人" in author.text() and author.labels() == ["返回议题"]  # not one's own

    reporters = [Person(services, name) for name in ("a", "b", "c")]
    for reporter in reporters:
        await reporter.send("button", payload=f"pt:{topic.id}")
        await reporter.press("看建议")
        await reporter.press("举报第1条")
        assert "已收到您的举报" in reporter.text()
    await reporters[0].send("button", payload=reporters[0].button("返回议题"))
    assert "建议 0" in reporters[0].text()
    (s,) = await _rows(services, Suggestion)
    assert (s.status, s.hidden_by_reports, s.reports) == ("hidden", True, 3)
    (notice,) = await _outbox(services, "suggestion.reported_notice")
    assert notice.address == "V1:convener" and "被 3 人举报" in notice.body["text"]

    convener = Person(services, "V1:convener")
    await convener.send("button", payload=notice.body["buttons"][0][1])
    assert "被 3 人举报，已暂时隐藏" in convener.text()
    await convener.press("隐藏")
    await convener.send(text="  ")
    assert "请填写「理由」" in convener.text()
    await convener.send(text="人身攻击")
    assert convener.text().startswith("已隐藏")
    (told,) = await _outbox(services, "suggestion.hidden")
    assert "未予公开。理由：人身攻击" in told.body["text"]
    async with services.sessions() as session:
        fresh = await session.get(Topic, topic.id)
    assert fresh is not None and fresh.state == State.PUBLICIZED
    assert (
        world.person("V1", Role.CONVENER) == (await _rows(services, Suggestion))[0].moderated_by_id
    )
