"""A made-up city (云溪市) with rooms, reviewers, residents and topics in every state.

Everything goes through the real paths (room import, ``Lifecycle``), so the demo is also
a smoke test of them. Loading twice changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services import Services
from notices.notify import OutboxWriter
from storage.db import transaction
from storage.models import ChannelIdentity, OutboxMessage, Person, RoleGrant, Room, Topic
from workflow.clock import CHINA, FixedClock
from workflow.engine import Lifecycle
from workflow.lifecycle import Role
from workflow.permissions import load_actor
from workflow.rooms import get_room, import_rooms, parse_rooms_csv

ROOMS_CSV = Path(__file__).with_name("rooms.csv")

#: Every room gets a convener and a Party secretary; districts also a supervisor.
EXTRA_ROLES = [("DH-JY-HB", Role.GRID), ("XS-LT", Role.MEMBER), ("DH-JY-HB", Role.OPERATOR)]
RESIDENTS = ["王秀英", "李建国", "张伟", "刘芳"]

FIND, PLAN = (
    ("record_findings", {"findings": "走访居民32户，征集意见45条。"}),
    ("plan_research", {"plan": "召集人带队，11月第二周走访沿线住户。"}),
)
MEETING = (
    "schedule_meeting",
    {"place": "社区议事厅", "link": "https://meet.example.org/demo"},  # time: see _walk
)
FULL_PATH: list[tuple[str, dict[str, Any]]] = [
    ("screen_accept", {"category": "协商议事", "reason": "涉及居民共同利益，适合协商。"}),
    ("approve", {}),
    ("publish", {}),
    PLAN,
    FIND,
    MEETING,
    ("record_meeting", {"consensus": "在步道两端各建一座公厕，由街道申请专项资金。"}),
    (
        "approve_outcome",
        {"implementer": "锦园街道城管科", "measures": "立项、设计、施工", "due": "2027-03-31"},
    ),
    ("publish_results", {}),
    ("record_progress", {"note": "设计方案已完成。"}),
    ("complete", {"summary": "两座公厕已投入使用。"}),
]

# room, submitter (resident index or role), source, title, background, steps
TOPICS: list[tuple[str, Any, str, str, str, list[tuple[str, dict[str, Any]]]]] = [
    (
        "DH-JY-HB",
        0,
        "public",
        "运河步道沿线增设公共厕所",
        "步道每天晨练散步的人很多，沿线3公里没有一处公厕，老人孩子很不方便。",
        FULL_PATH,
    ),
    (
        "DH-JY-QS",
        1,
        "public",
        "夜间施工噪音扰民",
        "工地经常干到夜里十二点，影响休息。",
        [
            (
                "redirect",
                {
                    "kind": "意见建议",
                    "handling": "已转城管部门依法查处",
                    "feedback": "工地已承诺22点后停止施工。",
                },
            )
        ],
    ),
    (
        "DH-JY-HB",
        Role.GRID,
        "grid",
        "小区为老人增设休息长椅",
        "入户走访时多位老人反映，小区步行道没有可以歇脚的地方。",
        FULL_PATH[:3],
    ),
    (
        "XS-LT-YJ",
        2,
        "public",
        "46户渔民共用电表改造",
        "渔民上岸后多户共用一块电表，电费分摊经常起矛盾。",
        FULL_PATH[:6],
    ),
    (
        "XS-LT-TH",
        3,
        "public",
        "雨后农田积水排涝",
        "连续降雨后村南片农田积水，排水沟堵塞。",
        FULL_PATH[:1],
    ),
    (
        "XS-LT",
        Role.MEMBER,
        "member",
        "暑期留守儿童托管班",
        "暑假期间留守儿童无人看管，建议利用村部开设托管班。",
        FULL_PATH[:7],
    ),
    (
        "XS-SQ-SQ",
        0,
        "public",
        "白沙河凉亭栏杆破损",
        "凉亭栏杆松动，有安全隐患。",
        [("transfer", {"to_room": "XS-SQ-BS", "reason": "凉亭位于白沙村辖区。"})],
    ),
    ("DH-GX-CY", 1, "public", "小区下水道经常堵塞", "3号楼下水道每月都堵，污水外溢。", []),
    (
        "XS-LT-TH",
        2,
        "public",
        "与邻居的宅基地纠纷",
        "邻居盖房占了我家地基。",
        [
            (
                "decline",
                {
                    "reason": "属个人纠纷，不属于协商议事范围，已建议通过人民调解解决。",
                    "contact_record": "电话联系，2026年11月3日",
                },
            )
        ],
    ),
    (
        "XS-SQ-BS",
        3,
        "public",
        "村道硬化",
        "通往石桥村的土路下雨天无法通行，约需6万元硬化。",
        [
            (
                "refer_to_parent",
                {"other_room": "XS-SQ-SQ", "reason": "道路跨两村，受理议事室有争议。"},
            )
        ],
    ),
    (
        "DH-JY-QS",
        2,
        "public",
        "楼道堆放杂物",
        "楼道堆满杂物，存在消防隐患。",
        [("withdraw", {"reason": "物业已清理。"})],
    ),
]


async def load_demo(services: Services) -> int:
    rows = parse_rooms_csv(ROOMS_CSV.read_bytes())
    async with transaction(services.sessions) as session:
        result = await import_rooms(session, rows, services.clock.now())
        print(
            f"demo rooms: {result.created} created, {result.updated} updated, "
            f"{result.unchanged} unchanged"
        )
        if (await session.exec(select(func.count()).select_from(Topic))).one():
            print("demo topics already present; nothing more to do")
            return 0
        people = await _people(session, [r.code for r in rows], services.clock.now())
        start = (
            services.clock.now()
            .astimezone(CHINA)
            .replace(hour=9, minute=0, second=0, microsecond=0)
        )
        for index, topic in enumerate(TOPICS):
            clock = FixedClock(start - timedelta(days=40 - 2 * index))
            await _walk(session, services, clock, people, *topic)
        # The walk is the demo's past: its cards and notices were read back then. Left
        # pending, a reviewer's first `chat` would print weeks of stale cards, and a typed
        # "1" would answer the last of them instead of the to-do list just asked for.
        await session.exec(
            update(OutboxMessage)
            .where(col(OutboxMessage.status) == "pending")
            .values(status="sent", sent_at=services.clock.now())
        )
        print(f"demo topics: {len(TOPICS)} created")
    return 0


async def _people(session: AsyncSession, codes: list[str], now: datetime) -> dict[Any, int]:
    """Reviewers for each room and a few residents, each with a console identity."""
    people: dict[Any, int] = {}

    async def person(key: Any, name: str, handle: str) -> int:
        row = Person(display_name=name)
        session.add(row)
        await session.flush()
        assert row.id is not None
        session.add(
            ChannelIdentity(
                person_id=row.id, channel="console", external_id=handle, last_inbound_at=now
            )
        )
        people[key] = row.id
        return row.id

    for index, name in enumerate(RESIDENTS):
        await person(index, name, f"resident{index + 1}")
    for code in codes:
        room = await get_room(session, code)
        assert room is not None and room.id is not None
        roles = [Role.CONVENER, Role.PARTY] + [r for c, r in EXTRA_ROLES if c == code]
        if room.level == "district":
            roles.append(Role.SUPERVISOR)
        for role in roles:
            pid = await person(
                (code, role), f"{room.name[:-5]}{_ROLE_TITLES[role]}", f"{code.lower()}-{role}"
            )
            session.add(RoleGrant(person_id=pid, room_id=room.id, role=role, granted_at=now))
            people.setdefault(role, pid)
    await session.flush()
    return people


_ROLE_TITLES = {
    Role.CONVENER: "召集人",
    Role.PARTY: "党组织书记",
    Role.SUPERVISOR: "督导",
    Role.GRID: "网格员",
    Role.MEMBER: "政协委员",
    Role.OPERATOR: "操作员",
}


async def _walk(
    session: AsyncSession,
    services: Services,
    clock: FixedClock,
    people: dict[Any, int],
    code: str,
    who: Any,
    source: str,
    title: str,
    background: str,
    steps: list[tuple[str, dict[str, Any]]],
) -> None:
    lifecycle = Lifecycle(
        clock,
        services.calendar,
        listeners=[OutboxWriter(clock, services.config.server.public_base_url, services.calendar)],
    )
    room = await get_room(session, code)
    assert room is not None
    actor = await load_actor(session, people[(code, who)] if isinstance(who, Role) else people[who])
    submitter = people[0] if isinstance(who, Role) else None  # grid/member act for a resident
    topic, _ = await lifecycle.open_topic(
        session,
        room=room,
        actor=actor,
        source=source,
        title=title,
        background=background,
        submitter_id=submitter,
    )
    for action, fields in steps:
        clock.advance(timedelta(days=1, hours=2))
        if action == "publish" and all(a != "schedule_meeting" for a, _ in steps):
            # Suggestions still open when someone tries the demo today (a topic that goes
            # on to its meeting keeps the default: suggestions close before it).
            today = services.clock.now().astimezone(CHINA).date()
            fields = {**fields, "suggestions_close": today + timedelta(days=10)}
        if action == "schedule_meeting" and topic.published_at is not None:
            # A week after publication at the earliest (Yancheng norms §14): the eighth day.
            day = topic.published_at.astimezone(CHINA).date() + timedelta(days=8)
            fields = {**fields, "time": f"{day.isoformat()}T19:00"}
        if action == "withdraw":
            actor = await load_actor(session, topic.submitter_id or 0)
        else:
            role = {"approve": Role.PARTY, "approve_outcome": Role.PARTY}.get(action, Role.CONVENER)
            current = await session.get(Room, topic.room_id)
            assert current is not None
            actor = await load_actor(session, people[(current.code, role)])
        await lifecycle.apply(session, topic, action, actor, **fields)
