"""Reviewers in the chat: cards with buttons, the fields a step needs, and every refusal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlmodel import col, select

from bot.config import load_config
from bot.services import Services, build_services
from dialogs.router import Dialogs
from dialogs.types import Inbound, Reply, room_payload
from storage.db import make_session_factory, transaction
from storage.models import AuditEntry, OutboxMessage, RoleGrant, Topic
from tests.world import ROUTES, World, build_world
from workflow.clock import FixedClock
from workflow.engine import available_actions
from workflow.lifecycle import SUBMITTER, TRANSITIONS, Role, State
from workflow.permissions import Actor, acting_role


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
    yield services
    await services.close()


class Reviewer:
    """A person with a console identity ``ROOM:role`` (see tests/world.py)."""

    def __init__(self, dialogs: Dialogs, address: str) -> None:
        self.dialogs, self.address = dialogs, address

    async def press(self, payload: str) -> list[Reply]:
        return await self.dialogs.handle(
            Inbound("console", self.address, "button", payload=payload)
        )

    async def type(self, text: str) -> list[Reply]:
        return await self.dialogs.handle(Inbound("console", self.address, "text", text=text))

    async def scan(self, room: str) -> list[Reply]:
        return await self.dialogs.handle(
            Inbound("console", self.address, "start", payload=room_payload(room))
        )


async def cards(world: World, address: str) -> list[OutboxMessage]:
    async with world.sessions() as session:
        return list(
            await session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.address == address)
                .order_by(col(OutboxMessage.id))
            )
        )


def button(message: OutboxMessage, label: str) -> str:
    return next(payload for text, payload in message.body["buttons"] if text == label)


def texts(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)


async def audit(world: World) -> list[tuple[str, str]]:
    async with world.sessions() as session:
        rows = await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))
        return [(r.action, r.subject.get("reason", "")) for r in rows]


async def test_a_new_topic_reaches_the_convener_as_a_card_with_buttons(world: World) -> None:
    await world.open("V1", title="3号楼前路灯不亮", contact_phone="13812345678")
    await world.open("V1", title="路灯坏了好几天", contact_phone=None)
    card = (await cards(world, "V1:convener"))[-1]
    assert [label for label, _ in card.body["buttons"]] == [
        "受理",
        "不予受理",
        "非议事范围",
        "转办",
        "提交上级裁定",
    ]
    assert all(len(payload.encode()) <= 64 for _, payload in card.body["buttons"])
    text = card.body["text"]
    assert "【待初审】D1-2026-000002" in text and "来源：公开征题" in text
    assert "提议人：r*" in text  # the resident's name masked
    assert "可能重复的议题：\n· D1-2026-000001「3号楼前路灯不亮」（待初审）" in text
    first = (await cards(world, "V1:convener"))[0].body["text"]
    assert "138****5678" in first and "13812345678" not in first


async def test_accept_then_approve_through_buttons_and_answers(
    world: World, services: Services
) -> None:
    topic = await world.open("V1")
    convener = Reviewer(services.dialogs, "V1:convener")
    asked = await convener.press(button((await cards(world, "V1:convener"))[-1], "受理"))
    assert asked[0].text == "请选择「议题类别」："
    assert [b.label for b in asked[0].buttons][-1] == "协商议事"
    assert texts(await convener.press(asked[0].buttons[-1].payload)) == "请输入「理由」："
    done = texts(await convener.type("涉及沿线居民共同利益"))
    assert done == f"已办理「受理」：{topic.number}「运河步道增设公厕」，当前状态：待党组织审定。"
    topic = await world.reload(topic)
    assert (topic.state, topic.category) == (State.AWAITING_APPROVAL, "协商议事")
    assert topic.facts["screen_accept"]["reason"] == "涉及沿线居民共同利益"

    party = Reviewer(services.dialogs, "V1:party")
    card = (await cards(world, "V1:party"))[-1]
    assert [label for label, _ in card.body["buttons"]] == ["审定通过", "退回"]
    asked = await party.press(button(card, "审定通过"))
    assert asked[0].text.startswith("如需填写「议题标题」请直接发送")
    await party.type("运河步道沿线公厕建设")
    await party.press("k:skip")  # background unchanged
    topic = await world.reload(topic)
    assert (topic.state, topic.title) == (State.APPROVED, "运河步道沿线公厕建设")


async def test_accepting_as_another_category_is_handled_outside_consultation(
    world: World, services: Services
) -> None:
    topic = await world.open("V1")
    convener = Reviewer(services.dialogs, "V1:convener")
    [asked] = await convener.press(button((await cards(world, "V1:convener"))[-1], "受理"))
    assert [b.label for b in asked.buttons] == [
        "信访求决",
        "涉法涉诉",
        "意见建议",
        "提案或社情民意线索",
        "协商议事",
    ]
    switched = await convener.press(asked.buttons[2].payload)  # 意见建议
    assert texts(switched) == (
        "「意见建议」类议题不进入协商议事程序，按非议事范围办理。\n请输入「办理方式」："
    )
    await convener.type("转城管部门办理")
    done = texts(await convener.type("已答复提议人"))
    assert done.startswith("已办理「非议事范围」：") and done.endswith(
        "当前状态：已转其他渠道办理。"
    )
    topic = await world.reload(topic)
    assert (topic.state, topic.category) == (State.REDIRECTED, "意见建议")
    assert topic.facts["redirect"] == {
        "kind": "意见建议",
        "handling": "转城管部门办理",
        "feedback": "已答复提议人",
    }
    assert not [m for m in await cards(world, "V1:party") if m.topic_id == topic.id]


async def test_decline_redirect_and_send_back(world: World, services: Services) -> None:
    convener = Reviewer(services.dialogs, "V1:convener")
    declined = await world.open("V1")
    await convener.press(button((await cards(world, "V1:convener"))[-1], "不予受理"))
    await convener.type("属个人纠纷")
    await convener.type("电话沟通，11月3日")
    assert (await world.reload(declined)).facts["decline"] == {
        "reason": "属个人纠纷",
        "contact_record": "电话沟通，11月3日",
    }

    redirected = await world.open("V1")
    asked = await convener.press(button((await cards(world, "V1:convener"))[-1], "非议事范围"))
    assert [b.label for b in asked[0].buttons] == [
        "信访求决",
        "涉法涉诉",
        "意见建议",
        "提案或社情民意线索",
    ]
    await convener.press(asked[0].buttons[2].payload)
    await convener.type("转城管部门")
    await convener.type("工地已承诺停工")
    assert (await world.reload(redirected)).state == State.REDIRECTED

    sent_back = await world.walk(await world.open("V1"), ["screen_accept"])
    party = Reviewer(services.dialogs, "V1:party")
    await party.press(button((await cards(world, "V1:party"))[-1], "退回"))
    await party.type("请补充现场照片")
    assert (await world.reload(sent_back)).state == State.SUBMITTED
    again = (await cards(world, "V1:convener"))[-1]
    assert "被党组织退回" in again.body["text"] and "受理" in dict(again.body["buttons"])


async def test_transfer_by_picking_a_nearby_room(world: World, services: Services) -> None:
    topic = await world.open("V1")
    convener = Reviewer(services.dialogs, "V1:convener")
    asked = await convener.press(button((await cards(world, "V1:convener"))[-1], "转办"))
    assert [b.label for b in asked[0].buttons] == ["二村议事室", "一镇议事室"]  # sibling, parent
    await convener.press(asked[0].buttons[0].payload)
    await convener.type("凉亭在二村辖区")
    topic = await world.reload(topic)
    assert (topic.state, topic.room_id) == (State.SUBMITTED, world.rooms["V2"])
    assert "受理" in dict((await cards(world, "V2:convener"))[-1].body["buttons"])


async def test_dispute_goes_up_and_the_parent_names_the_room(
    world: World, services: Services
) -> None:
    topic = await world.open("V1")
    convener = Reviewer(services.dialogs, "V1:convener")
    await convener.press(button((await cards(world, "V1:convener"))[-1], "提交上级裁定"))
    searched = await convener.type("三村")  # a room found by its name
    assert [b.label for b in searched[0].buttons] == ["三村议事室"]
    await convener.press(searched[0].buttons[0].payload)
    await convener.type("道路跨两村")
    topic = await world.reload(topic)
    assert (topic.state, topic.room_id) == (State.REFERRED, world.rooms["D1"])
    supervisor = Reviewer(services.dialogs, "D1:supervisor")
    card = (await cards(world, "D1:supervisor"))[-1]
    assert [label for label, _ in card.body["buttons"]] == ["裁定受理议事室"]
    await supervisor.press(button(card, "裁定受理议事室"))
    await supervisor.type("三村")
    await supervisor.press("r:V3")
    await supervisor.type("主要路段在三村")
    assert (await world.reload(topic)).room_id == world.rooms["V3"]


async def test_refused_presses_change_nothing_and_are_audited(
    world: World, services: Services
) -> None:
    topic = await world.open("V1")
    card = (await cards(world, "V1:convener"))[-1]
    decline = button(card, "不予受理")
    stranger = Reviewer(services.dialogs, "V2:convener")
    assert texts(await stranger.press(decline)) == "这个按钮无效，或不是发给您的。"
    assert texts(await stranger.press("b:made-up-token")) == "这个按钮无效，或不是发给您的。"

    convener = Reviewer(services.dialogs, "V1:convener")
    await convener.press(decline)
    await convener.type("属个人纠纷")
    await convener.type("电话")
    assert texts(await convener.press(decline)) == "这个按钮已经用过了，议题已处理。"
    assert (
        texts(await convener.press(button(card, "受理"))) == "该议题已被处理，当前状态：不予受理。"
    )
    assert await audit(world) == [
        ("button.refused", "forged"),
        ("button.refused", "forged"),
        ("button.refused", "used"),
        ("button.refused", "stale"),
    ]
    assert (await world.reload(topic)).state == State.DECLINED


async def test_a_revoked_role_cannot_use_an_old_card(world: World, services: Services) -> None:
    topic = await world.open("V1")
    convener = world.person("V1", Role.CONVENER)
    async with transaction(world.sessions) as session:
        for grant in await session.exec(select(RoleGrant).where(RoleGrant.person_id == convener)):
            grant.revoked_at = world.clock.now()
    replies = await Reviewer(services.dialogs, "V1:convener").press(
        button((await cards(world, "V1:convener"))[-1], "受理")
    )
    assert texts(replies) == "您现在不能对该议题进行「受理」操作。"
    assert (await world.reload(topic)).state == State.SUBMITTED
    assert await audit(world) == [("button.refused", "not_permitted")]


async def test_two_reviewers_at_once_exactly_one_wins(world: World, services: Services) -> None:
    async with transaction(world.sessions) as session:  # a second convener in V1
        session.add(
            RoleGrant(
                person_id=world.person("V1", Role.PARTY),
                room_id=world.rooms["V1"],
                role=Role.CONVENER,
            )
        )
    topic = await world.open("V1")
    first = Reviewer(services.dialogs, "V1:convener")
    second = Reviewer(services.dialogs, "V1:party")
    await first.press(button((await cards(world, "V1:convener"))[-1], "不予受理"))
    await first.type("属个人纠纷")
    await second.press(button((await cards(world, "V1:party"))[-1], "受理"))
    await second.press("v:4")
    answers = await asyncio.gather(first.type("电话"), second.type("涉及共同利益"))
    outcomes = sorted(texts(a)[:3] for a in answers)
    assert outcomes[0].startswith("已") and not outcomes[1].startswith("已"), answers
    async with world.sessions() as session:
        fresh = await session.get(Topic, topic.id)
    assert fresh is not None and fresh.state in (State.DECLINED, State.AWAITING_APPROVAL)
    assert fresh.version == 1


async def test_todo_list_most_urgent_first(world: World, services: Services) -> None:
    older = await world.open("V1", title="先提交的")
    world.clock.advance(timedelta(days=1))
    newer = await world.open("V1", title="后提交的")
    convener = Reviewer(services.dialogs, "V1:convener")
    [listing] = await convener.type("待办")
    assert [b.payload for b in listing.buttons] == [f"o:{older.id}", f"o:{newer.id}"]
    assert listing.buttons[0].label == "先提交的｜待初审｜已等1个工作日，3月9日前"
    world.clock.advance(timedelta(days=8))  # Wed 03-11: both are past their five days
    [later] = await convener.type("待办")
    assert later.buttons[0].label == "先提交的｜待初审｜已等7个工作日，已超期"
    [card] = await convener.press(listing.buttons[0].payload)
    assert "【待初审】" in card.text and card.buttons[0].label == "受理"
    assert texts(await Reviewer(services.dialogs, "-:resident").type("待办")) == (
        "目前没有待您处理的议题。"
    )


async def test_a_long_todo_list_comes_a_page_at_a_time(world: World, services: Services) -> None:
    """Issue 11: one page of the most urgent, how many more, and a button to the next."""
    mine = []
    for n in range(23):
        mine.append(await world.open("V1", title=f"议题{n:02d}"))
        world.clock.advance(timedelta(minutes=1))
    await world.open("V2", title="别村的")  # another room
    await world.at(State.AWAITING_APPROVAL)  # the secretary's to decide, not the convener's
    await world.at(State.DECLINED)  # closed
    convener = Reviewer(services.dialogs, "V1:convener")
    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(services.engine.sync_engine, "before_cursor_execute", listen)
    try:
        [first] = await convener.type("待办")
    finally:
        event.remove(services.engine.sync_engine, "before_cursor_execute", listen)
    assert first.text == (
        "待办议题共 23 个（按期限排序），这是第 1–10 个：\n还有 13 个，请点“下一页”查看。"
    )
    assert [b.label.split("｜")[0] for b in first.buttons[:10]] == [t.title for t in mine[:10]]
    assert first.buttons[10].label == "下一页（还有 13 个）" and len(first.buttons) == 11
    # Loaded a page, not every open topic: how many, then the page; nothing per topic.
    about_topics = [s for s in statements if "topic" in s]
    assert len(about_topics) == 2 and "LIMIT" in about_topics[1], about_topics

    [second] = await convener.type("11")  # typed, the number of the next-page button
    assert second.text.startswith("待办议题共 23 个（按期限排序），这是第 11–20 个：")
    assert second.text.endswith("还有 3 个，请点“下一页”查看。")
    [third] = await convener.press(second.buttons[-1].payload)
    assert third.text == "待办议题共 23 个（按期限排序），这是第 21–23 个："
    assert [b.payload for b in third.buttons] == [f"o:{t.id}" for t in mine[20:]]
    seen = [b.payload for r in (first, second, third) for b in r.buttons if b.payload[:2] == "o:"]
    assert seen == [f"o:{t.id}" for t in mine]
    # An old page past the end (items handled since) shows the last one.
    assert (await convener.press("m:todo:9"))[0].text == third.text
    [card] = await convener.press(third.buttons[0].payload)
    assert "议题20" in card.text and card.buttons[0].label == "受理"


async def test_the_todo_list_has_what_each_role_can_act_on(
    world: World, services: Services
) -> None:
    """The list is filtered in SQL from the transition table: it agrees with the buttons
    each person gets (withdrawing one's own topic is not review work)."""
    topics = [await world.at(state) for state in ROUTES]
    for role in (Role.CONVENER, Role.PARTY, Role.OPERATOR, Role.MEMBER):
        actor = await world.actor(world.person("V1", role))
        async with world.sessions() as session:
            expected = [
                t.id
                for t in topics
                if set(await available_actions(session, t, actor)) - {"withdraw"}
            ]
        [listing] = await Reviewer(services.dialogs, f"V1:{role}").type("待办")
        listed = [int(b.payload[2:]) for b in listing.buttons]
        assert sorted(listed) == sorted(expected), role
        assert role == Role.MEMBER or listed, role


async def _day():
    from datetime import timedelta

    return timedelta(days=1)


PLACES = {"own": "V1", "other": "V2", "supervising": "T1"}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("role", [*list(Role), SUBMITTER])
def test_permission_matrix(role: str, place: str) -> None:
    """Every role × every action × own room / another room / a room above."""
    rooms = {"V1": 1, "V2": 2, "T1": 3}
    chain = [rooms["V1"], rooms["T1"]]  # the topic's room V1 lies under T1
    topic = Topic(
        id=1,
        number="N",
        room_id=rooms["V1"],
        source="public",
        title="t",
        state="submitted",
        submitter_id=99 if role == SUBMITTER else 1,
        step_started_at=None,
        created_at=None,
        updated_at=None,
    )  # type: ignore[arg-type]
    grants = frozenset() if role == SUBMITTER else frozenset({(rooms[PLACES[place]], role)})
    actor = Actor(99, grants)
    for action, transition in TRANSITIONS.items():
        allowed = acting_role(actor, transition, topic, chain) is not None
        if role == SUBMITTER:
            expected = SUBMITTER in transition.roles  # wherever they are
        elif role == Role.ADMIN:
            expected = place != "other" and SUBMITTER not in transition.roles
        else:
            expected = place == "own" and role in transition.roles
        assert allowed == expected, (role, place, action)


async def test_typing_the_labels_acts_like_tapping_and_a_miss_keeps_the_card(
    world: World, services: Services
) -> None:
    """Issue 11: typed button words work like taps; a message not understood keeps them."""
    topic = await world.open("V1", title="路灯坏了")
    await world.open("V1", title="路灯不亮")
    convener = Reviewer(services.dialogs, "V1:convener")
    await convener.scan("V1")
    await convener.type("待办")
    assert texts(await convener.type("路灯")).startswith("没有看懂")  # starts both labels
    [card] = await convener.type(" 路灯坏 ")  # the start of one label only
    assert "【待初审】" in card.text and topic.number in card.text
    assert texts(await convener.type("好的")).startswith("没有看懂")
    assert texts(await convener.type("随便")).startswith("没有看懂")
    asked = await convener.type("受理")  # the card is still on offer after two misses
    assert asked[0].text == "请选择「议题类别」："
    assert texts(await convener.type("协商议事")) == "请输入「理由」："
    # A step was taken: the category buttons are gone, so "1" is the reason, not a press.
    assert texts(await convener.type("1")).startswith("已办理「受理」")
    fresh = await world.reload(topic)
    assert (fresh.category, fresh.facts["screen_accept"]["reason"]) == ("协商议事", "1")


async def test_a_number_still_works_after_a_message_not_understood(
    world: World, services: Services
) -> None:
    await world.open("V1", title="路灯坏了")
    convener = Reviewer(services.dialogs, "V1:convener")
    await convener.scan("V1")
    await convener.type("待办")
    await convener.type("１")  # full width: the card
    assert texts(await convener.type("嗯？")).startswith("没有看懂")
    asked = await convener.type("1")
    assert asked[0].text == "请选择「议题类别」："
    assert texts(await convener.type("提案")).startswith("「提案或社情民意线索」类")  # a prefix
