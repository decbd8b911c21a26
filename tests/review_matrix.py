"""The review matrix shared by the channel tests (tests/test_review_telegram.py and
tests/test_review_wechat.py): who reviews where, what each one presses and types, and what
the topic and its submitter must end up with.

A channel test gives every person a ``Chat`` that speaks that platform's payloads; ``play``
runs a case's steps through them, delivering the outbox (cards, notices) to the platform
fake before every step, and ``check`` reads the outcome back from the database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pytest
from sqlmodel import col, select

from storage.db import SessionFactory, transaction
from storage.models import AuditEntry, ChannelIdentity, Person, RoleGrant, Room, Topic
from workflow.lifecycle import Role, State

#: The reviewers of a case: key → (room, role). V1 and V3 meet at D1 (tests/world.py).
REVIEWERS: dict[str, tuple[str, Role]] = {
    "convener": ("V1", Role.CONVENER),
    "party": ("V1", Role.PARTY),
    "receiver": ("V2", Role.CONVENER),  # a transfer's receiving convener
    "supervisor": ("D1", Role.SUPERVISOR),  # names the room of a disputed topic
    "assignee": ("V3", Role.CONVENER),  # the convener of the room named
}
TITLE = "小区下水道经常堵塞"
BACKGROUND = "每个月都堵，污水外溢"
REFUSED = "这个按钮无效，或不是发给您的。"


class Chat(Protocol):
    """One person in a chat app, acting only through that platform's payloads."""

    async def press(self, label: str) -> None:
        """Press ``label`` on the newest thing the bot showed this person."""

    async def say(self, text: str) -> None: ...

    def cards(self) -> list[list[str]]:
        """The button labels of every card the bot pushed to this person, oldest first."""
        ...


Step = tuple[str, str, str]  # (reviewer key, "press" or "say", label or text)

ACCEPT: tuple[Step, ...] = (
    ("convener", "press", "受理"),
    ("convener", "press", "协商议事"),
    ("convener", "say", "涉及小区居民共同利益"),
)


@dataclass(frozen=True)
class Case:
    steps: tuple[Step, ...]
    state: State
    room: str
    facts: dict[str, dict[str, Any]]  # action → the fields recorded for it
    told: tuple[str, ...]  # what the submitter is told next (fragments)
    title: str = TITLE
    category: str | None = None
    then: tuple[str, str] | None = None  # (reviewer, button) on the next card pushed


CASES: dict[str, Case] = {
    "受理": Case(
        ACCEPT,
        State.AWAITING_APPROVAL,
        "V1",
        {"screen_accept": {"category": "协商议事", "reason": "涉及小区居民共同利益"}},
        ("已通过初审，归类为「协商议事」", "受理理由：涉及小区居民共同利益"),
        category="协商议事",
        then=("party", "审定通过"),
    ),
    "不予受理": Case(
        (
            ("convener", "press", "不予受理"),
            ("convener", "say", "属物业维修范围"),
            ("convener", "say", "电话沟通，3月2日"),
        ),
        State.DECLINED,
        "V1",
        {"decline": {"reason": "属物业维修范围", "contact_record": "电话沟通，3月2日"}},
        ("经初审不予受理", "理由：属物业维修范围"),
    ),
    "非议事范围": Case(
        (
            ("convener", "press", "非议事范围"),
            ("convener", "press", "意见建议"),
            ("convener", "say", "转物业公司疏通"),
            ("convener", "say", "物业已承诺本周疏通"),
        ),
        State.REDIRECTED,
        "V1",
        {
            "redirect": {
                "kind": "意见建议",
                "handling": "转物业公司疏通",
                "feedback": "物业已承诺本周疏通",
            }
        },
        ("已按「意见建议」办理", "办理情况：转物业公司疏通", "反馈：物业已承诺本周疏通"),
        category="意见建议",
    ),
    "转办": Case(
        (
            ("convener", "press", "转办"),
            ("convener", "press", "二村议事室"),  # a sibling, offered first
            ("convener", "say", "管道在二村辖区"),
        ),
        State.SUBMITTED,
        "V2",
        {"transfer": {"to_room": "V2", "reason": "管道在二村辖区"}},
        ("已转至二村议事室办理", "转办理由：管道在二村辖区"),
        then=("receiver", "受理"),
    ),
    "提交上级裁定": Case(
        (
            ("convener", "press", "提交上级裁定"),
            ("convener", "say", "三村"),  # not nearby: found by its name
            ("convener", "press", "三村议事室"),
            ("convener", "say", "管道跨两村"),
            ("supervisor", "press", "裁定受理议事室"),
            ("supervisor", "say", "三村"),
            ("supervisor", "press", "三村议事室"),
            ("supervisor", "say", "主要管段在三村"),
        ),
        State.SUBMITTED,
        "V3",
        {
            "refer_to_parent": {"other_room": "V3", "reason": "管道跨两村"},
            "assign_room": {"to_room": "V3", "reason": "主要管段在三村"},
        },
        ("经上级议事室裁定", "由三村议事室受理"),
        then=("assignee", "受理"),
    ),
    "审定通过": Case(
        (
            *ACCEPT,
            ("party", "press", "审定通过"),
            ("party", "press", "跳过"),  # the title as it is
            ("party", "press", "跳过"),  # the background as it is
        ),
        State.APPROVED,
        "V1",
        {"approve": {}},
        (f"「{TITLE}」", "已经党组织审定通过"),
        category="协商议事",
    ),
    "审定通过（修改标题）": Case(
        (
            *ACCEPT,
            ("party", "press", "审定通过"),
            ("party", "say", "疏通小区下水道"),
            ("party", "press", "跳过"),
        ),
        State.APPROVED,
        "V1",
        {"approve": {"title": "疏通小区下水道", "previous_title": TITLE}},
        ("「疏通小区下水道」", "已经党组织审定通过"),
        title="疏通小区下水道",
        category="协商议事",
    ),
    "退回": Case(
        (
            *ACCEPT,
            ("party", "press", "退回"),
            ("party", "say", "请补充堵塞位置的照片"),
        ),
        State.SUBMITTED,
        "V1",
        {"send_back": {"comment": "请补充堵塞位置的照片"}},
        ("已退回召集人重新初审",),
        category="协商议事",
        then=("convener", "受理"),
    ),
}

#: For parametrizing: one test per action, named by its button.
MATRIX = [pytest.param(case, id=name) for name, case in CASES.items()]


async def enrol(
    sessions: SessionFactory,
    channel: str,
    external_id: str,
    room: str,
    role: str,
    *,
    last_inbound_at: datetime | None = None,
) -> int:
    """A person reachable on ``channel`` holding ``role`` in ``room``."""
    async with transaction(sessions) as session:
        person = Person(display_name=f"{room}-{role}")
        session.add(person)
        await session.flush()
        assert person.id is not None
        room_id = (await session.exec(select(Room.id).where(Room.code == room))).one()
        session.add(
            ChannelIdentity(
                person_id=person.id,
                channel=channel,
                external_id=external_id,
                last_inbound_at=last_inbound_at,
            )
        )
        session.add(RoleGrant(person_id=person.id, room_id=room_id, role=role))
        return person.id


async def play(
    case: Case, people: dict[str, Chat], deliver: Callable[[], Awaitable[object]]
) -> dict[str, int]:
    """Take the case's steps; the number of cards each person had before the last one."""
    before: dict[str, int] = {}
    for who, kind, value in case.steps:
        await deliver()  # cards and notices go out through the dispatcher
        before = {key: len(chat.cards()) for key, chat in people.items()}
        chat = people[who]
        await (chat.press(value) if kind == "press" else chat.say(value))
    await deliver()
    return before


async def the_topic(sessions: SessionFactory) -> Topic:
    async with sessions() as session:
        return (await session.exec(select(Topic))).one()


async def check(
    case: Case,
    sessions: SessionFactory,
    people: dict[str, Chat],
    before: dict[str, int],
    told: str,
) -> None:
    """The topic's state, room, category, title and facts; what the submitter was told;
    the card the next reviewer got after the last step (``before``: cards until then)."""
    topic = await the_topic(sessions)
    async with sessions() as session:
        room = await session.get(Room, topic.room_id)
    assert room is not None
    assert (topic.state, room.code, topic.title) == (case.state, case.room, case.title)
    assert topic.category == case.category
    for action, fields in case.facts.items():
        assert topic.facts.get(action) == fields, topic.facts
    assert topic.number in told
    for fragment in case.told:
        assert fragment in told, told
    if case.then is not None:
        who, label = case.then
        cards = people[who].cards()
        assert len(cards) == before[who] + 1 and label in cards[-1], cards


async def refusals(sessions: SessionFactory) -> list[str]:
    """The reasons of the audited button refusals, oldest first."""
    async with sessions() as session:
        rows = await session.exec(
            select(AuditEntry)
            .where(AuditEntry.action == "button.refused")
            .order_by(col(AuditEntry.id))
        )
        return [r.subject.get("reason", "") for r in rows]
