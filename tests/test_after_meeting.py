"""After the meeting, through Telegram (the real webhook, the fake Bot API, the outbox, the
push expander and the reminder sweep on an injected clock): the outcome recorded with its
minutes and photos, sent back and approved, the results published and carried out, a
department's written reply chased when late, the topic implemented, and 问题解决了吗？
answered — 不满意 with a reason puts it back on the convener's list. The answers are read
back from the topic's page and from ``mashangyi topics show``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlmodel import col, select

from bot.cli import main
from bot.services import Services
from storage.db import transaction
from storage.models import Attachment, ChannelIdentity, OutboxMessage, Topic
from storage.satisfaction import SatisfactionAnswer
from tests import review_matrix as matrix
from tests import test_review_telegram as tg
from tests.fakes.telegram_api import FakeBotAPI
from tests.test_cards import act
from tests.test_telegram import Resident, payload, post
from tests.world import FIELDS
from workflow.clock import CHINA, FixedClock
from workflow.lifecycle import Role, State
from workflow.permissions import load_actor

client, config_path, fake, services = tg.client, tg.config_path, tg.fake, tg.services

#: Telegram users: the reviewers of V1 (and D1's supervisor), a follower, a stranger.
PEOPLE = {
    "convener": (6001, "V1", Role.CONVENER),
    "party": (6002, "V1", Role.PARTY),
    "operator": (6003, "V1", Role.OPERATOR),
    "implementer": (6004, "V1", Role.IMPLEMENTER),
    "supervisor": (6005, "D1", Role.SUPERVISOR),
}
FOLLOWER, STRANGER = 6101, 6102
CONSENSUS = "在小区东门新建雨水井两处，物业每月疏通主管道"
MINUTES = "到会居民23人，一致同意"


def china(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CHINA)


async def people(services: Services, client: TestClient, fake: FakeBotAPI) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, (user, room, role) in PEOPLE.items():
        await matrix.enrol(services.sessions, "telegram", str(user), room, role)
        found[key] = tg.Reviewer(client, fake, user=user)
    return found


async def take(services: Services, user: int, actions: list[str]) -> None:
    """The steps before the meeting (issue 13's other half), taken as Telegram ``user``."""
    async with transaction(services.sessions) as session:
        person_id = (
            await session.exec(
                select(ChannelIdentity.person_id).where(ChannelIdentity.external_id == str(user))
            )
        ).one()
        topic = (await session.exec(select(Topic))).one()
        actor = await load_actor(session, person_id)
        for action in actions:
            await services.lifecycle.apply(session, topic, action, actor, **FIELDS[action])


async def steps(who: tg.Reviewer, services: Services, *said: str) -> None:
    for step in said:
        await act(who, step)
        await tg.deliver(services)


async def photo(who: Resident, services: Services, size: int) -> None:
    sizes = payload("photo")["message"]["photo"]
    await who.send(photo=[{**p, "file_size": size} for p in sizes])
    await tg.deliver(services)


async def press_data(who: Resident, data: str) -> None:
    """A callback with ``data`` from ``who``, on a message of theirs (a forged or
    forwarded button)."""
    update_id, _ = who._next()
    query = payload("callback_query")["callback_query"] | {"id": f"q{update_id}", "data": data}
    query["from"] = query["from"] | {"id": who.user}
    query["message"] = query["message"] | {"chat": query["message"]["chat"] | {"id": who.user}}
    assert await post(who.client, {"update_id": update_id, "callback_query": query}) == 200


async def topic_now(services: Services) -> Topic:
    return await matrix.the_topic(services.sessions)


async def sweep(services: Services, when: str) -> None:
    clock = services.clock
    assert isinstance(clock, FixedClock)
    clock.set(china(when))
    await services.sweeper().run_once()
    await tg.deliver(services)


def texts_to(fake: FakeBotAPI, user: int) -> list[str]:
    return [m["text"] for m in fake.results("sendMessage") if m["chat"]["id"] == user]


async def topics_show(config: Path, number: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["--config", str(config), "topics", "show", number])
    assert code == 0
    return capsys.readouterr().out


async def to_the_meeting(
    services: Services, client: TestClient, fake: FakeBotAPI
) -> tuple[dict[str, Any], Resident]:
    """The reviewers, and a topic submitted in the chat and taken to its meeting."""
    staff = await people(services, client, fake)
    resident = Resident(client, fake)
    await tg.submit(resident)
    await take(services, PEOPLE["convener"][0], ["screen_accept"])
    await take(services, PEOPLE["party"][0], ["approve"])
    await take(
        services,
        PEOPLE["convener"][0],
        ["publish", "plan_research", "record_findings", "schedule_meeting"],
    )
    return staff, resident


async def test_after_the_meeting_to_is_it_solved(
    client: TestClient,
    services: Services,
    fake: FakeBotAPI,
    config_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = services.clock
    assert isinstance(clock, FixedClock)
    staff, resident = await to_the_meeting(services, client, fake)
    convener, party, implementer = staff["convener"], staff["party"], staff["implementer"]
    topic = await topic_now(services)
    follower = Resident(client, fake, user=FOLLOWER)
    await follower.say(f"/start p_{topic.number}")
    await follower.press("关注")
    clock.set(china("2026-03-23T10:00"))  # the Monday after the meeting
    await tg.deliver(services)

    # 6. The outcome: consensus, minutes, photos sent in the chat (an oversized one refused).
    await steps(convener, services, "待办", "下水道", "上传协商成果", CONSENSUS, MINUTES)
    assert convener.last().startswith("请发送「会议照片」")
    await photo(convener, services, 11 * 1024 * 1024)
    assert convener.last().startswith("这张照片太大（11.0 MB），最大 10.0 MB，未收下")
    async with services.sessions() as session:
        assert (await session.exec(select(Attachment))).all() == []
    await photo(convener, services, 90_000)
    assert convener.last().startswith("已收到第 1 张照片")
    await steps(convener, services, "完成")
    assert convener.last().startswith("已办理「上传协商成果」")
    topic = await topic_now(services)
    assert topic.state == State.OUTCOME_REVIEW and topic.review_due_at is not None
    async with services.sessions() as session:
        (linked,) = (await session.exec(select(Attachment))).all()
    assert linked.topic_id == topic.id and linked.event_id is not None
    assert topic.facts["record_meeting"]["meeting_photos"] == [linked.id]
    card = party.card()["text"]
    assert f"待审核的协商共识：{CONSENSUS}" in card and f"会议纪要：{MINUTES}" in card
    assert "会议照片：1 张" in card
    assert {"审定协商成果", "退回协商成果"} <= set(tg.buttons(party.card()))

    # ... sent back with a comment (an empty one is asked again), then approved.
    await steps(party, services, "退回协商成果")
    await party.say(" ")
    assert party.last() == "请输入「退回意见」："
    await steps(party, services, "请补充参会人数和照片")
    topic = await topic_now(services)
    assert topic.state == State.MEETING_SCHEDULED
    assert "退回意见：请补充参会人数和照片" in convener.card()["text"]
    assert "上传协商成果" in tg.buttons(convener.card())
    await steps(
        convener, services, "上传协商成果", CONSENSUS, MINUTES + "，另有3人线上参加", "跳过"
    )
    await steps(party, services, "审定协商成果", "区住建局", "新建雨水井，每月疏通", "2026-03-01")
    assert texts_to(fake, party.user)[-2].startswith("「完成时限」须晚于今天")
    await steps(party, services, "90天内（6月21日）")  # a date offered as a button
    topic = await topic_now(services)
    assert topic.state == State.OUTCOME_APPROVED
    assert topic.facts["approve_outcome"]["due"] == "2026-06-21"

    # 7. Results published (the follower is pushed), progress from the implementer.
    await steps(convener, services, "公示结果")
    await services.push_expander().run_once()
    await tg.deliver(services)
    assert "协商结果已在“码上查情”公示" in texts_to(fake, FOLLOWER)[-1]
    await steps(implementer, services, "记录落实进展", "已完成选址")
    assert (await topic_now(services)).facts["record_progress"]["note"] == "已完成选址"

    # ... a department's written reply requested by a deadline; the deadline in the past is
    # refused; late, the sweep nudges, tells the submitter and escalates.
    await steps(convener, services, "待办", "下水道", "请部门书面答复", "区水务局", "2026-03-23")
    assert texts_to(fake, convener.user)[-2].startswith("「答复期限」须晚于今天")
    await steps(convener, services, "2026-03-27")
    topic = await topic_now(services)
    assert topic.state == State.AWAITING_REPLY
    assert "【请书面答复】" in implementer.card()["text"]
    await sweep(services, "2026-03-27T10:00")  # the last day: not late yet
    assert not any("【催办】" in t for t in texts_to(fake, implementer.user))
    await sweep(services, "2026-03-30T10:00")
    assert any("【催办】" in t and "待部门书面答复" in t for t in texts_to(fake, implementer.user))
    assert "超过部门书面答复的期限（3月27日前）" in resident.last()
    assert not texts_to(fake, PEOPLE["supervisor"][0])
    await sweep(services, "2026-04-02T10:00")  # three working days later: the supervisors
    assert any(topic.number in t for t in texts_to(fake, PEOPLE["supervisor"][0]))
    await steps(implementer, services, "处理", "录入部门答复", "已列入今年排水改造计划")
    assert (await topic_now(services)).state == State.RESULTS_PUBLISHED

    # 8. Implemented: the submitter and the follower are asked.
    await steps(convener, services, "待办", "下水道", "办结", "雨水井已建成并投入使用")
    await services.push_expander().run_once()
    await tg.deliver(services)
    topic = await topic_now(services)
    assert topic.state == State.IMPLEMENTED
    assert "问题解决了吗？请点下面的按钮告诉我们" in resident.last()
    (asked,) = [m for m in fake.results("sendMessage") if m["chat"]["id"] == resident.user][-1:]
    assert list(tg.buttons(asked)) == ["满意", "基本满意", "不满意"]
    await follower.press("满意")
    assert follower.last() == "已记录您的评价：满意。感谢您的参与！"
    await follower.press("满意")  # a double tap
    assert follower.last() == "您的评价（满意）已记录过了，无需重复提交。"
    await follower.press("不满意")  # answering twice
    assert follower.last() == "您已评价过本次办理结果（满意），每人只能评价一次。"
    stranger = Resident(client, fake, user=STRANGER)
    await stranger.say("/start r_V1")
    await press_data(stranger, f"sa:{topic.id}:1")
    assert stranger.last() == "只有议题的提议人和关注、点赞或提过建议的群众可以评价。"

    # 不满意 asks why; an empty reason is refused; then the topic is reopened.
    await resident.press("不满意")
    assert resident.last().startswith("很抱歉问题没有解决好")
    await resident.say(" ")
    assert resident.last() == "请用文字说明不满意的原因（不能为空）。"
    assert (await topic_now(services)).state == State.IMPLEMENTED
    await resident.say("雨天东门还是积水")
    await tg.deliver(services)
    assert resident.last().endswith("议事室将重新办理，并告诉您进展。")
    topic = await topic_now(services)
    assert topic.state == State.REOPENED and topic.review_due_at is not None
    assert "不满意的原因：雨天东门还是积水" in convener.card()["text"]
    await steps(convener, services, "待办")
    (listed,) = [m for m in fake.results("sendMessage") if m["chat"]["id"] == convener.user][-1:]
    assert any("群众不满意，重新办理" in label for label in tg.buttons(listed))
    await resident.press("满意")  # on the old message: the topic is no longer implemented
    assert resident.last().startswith("该议题当前状态为「群众不满意，重新办理」，尚未办结")

    async with services.sessions() as session:
        answers = (
            await session.exec(select(SatisfactionAnswer).order_by(col(SatisfactionAnswer.id)))
        ).all()
    assert [(a.answerer, a.answer, a.reason) for a in answers] == [
        ("public", "satisfied", None),
        ("submitter", "dissatisfied", "雨天东门还是积水"),
    ]
    page = await (await client.get(f"/t/{topic.number}")).text()
    assert "问题解决了吗？" in page and "提议人的评价：不满意" in page
    assert "满意 1 · 基本满意 0 · 不满意 0" in page
    assert "雨天东门还是积水" not in page  # the reason stays with the room
    shown = await topics_show(config_path, topic.number, capsys)
    assert "submitter 不满意; public 满意 1" in shown
    assert "(submitter) 不满意: 雨天东门还是积水" in shown


async def test_unanswered_is_asked_once_more_then_recorded(
    client: TestClient,
    services: Services,
    fake: FakeBotAPI,
    config_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, resident = await to_the_meeting(services, client, fake)
    await take(services, PEOPLE["convener"][0], ["record_meeting"])
    await take(services, PEOPLE["party"][0], ["approve_outcome"])
    await take(services, PEOPLE["convener"][0], ["publish_results", "complete"])
    await tg.deliver(services)  # implemented on Monday 2026-03-02 10:00
    number = (await topic_now(services)).number
    asked = len(texts_to(fake, resident.user))

    await sweep(services, "2026-03-09T09:59")  # not yet seven days
    await sweep(services, "2026-03-13T10:00")  # asked once more…
    assert len(texts_to(fake, resident.user)) == asked + 1
    assert resident.last().startswith(f"您的议题「{matrix.TITLE}」（编号 {number}）办结已7天")
    await sweep(services, "2026-03-16T10:00")  # … once
    assert len(texts_to(fake, resident.user)) == asked + 1
    async with services.sessions() as session:
        assert (await session.exec(select(SatisfactionAnswer))).all() == []
    await sweep(services, "2026-03-20T10:30")  # seven days after the second asking
    async with services.sessions() as session:
        (row,) = (await session.exec(select(SatisfactionAnswer))).all()
        sent = (await session.exec(select(OutboxMessage))).all()
    assert (row.answerer, row.answer) == ("submitter", "unanswered")
    assert len(texts_to(fake, resident.user)) == asked + 1  # nobody told of it
    assert {m.kind for m in sent} >= {"reminder.satisfaction.again"}
    shown = await topics_show(config_path, number, capsys)
    assert "submitter 未答复" in shown
    page = await (await client.get(f"/t/{number}")).text()
    assert "提议人的评价：未答复" in page

    # A late answer still counts (it replaces the record of none), once.
    await resident.press("基本满意")
    assert resident.last() == "已记录您的评价：基本满意。感谢您的参与！"
    out = await asyncio.to_thread(
        main, ["--config", str(config_path), "topics", "show", number, "--json"]
    )
    assert out == 0
    shown_json = json.loads(capsys.readouterr().out)
    assert shown_json["satisfaction"][0]["submitter"] == "basically"
