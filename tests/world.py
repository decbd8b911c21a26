"""A small room tree with people in every role, and helpers to walk topics through it.

CITY ─┬─ D1 (district) ─┬─ T1 (town) ─┬─ V1 (village)
      │                 │             └─ V2
      │                 └─ T2 ──────── V3
      └─ D2 ──────────── T3 ──────── V4
OTHER (another city) ─── X
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import select

from notices.meeting_notices import MeetingNotices
from notices.notify import OutboxWriter
from storage.db import SessionFactory, transaction
from storage.models import ChannelIdentity, Person, RoleGrant, Room, Topic
from workflow.clock import CHINA, FixedClock
from workflow.engine import DomainEvent, Lifecycle
from workflow.lifecycle import SUBMITTER, TRANSITIONS, Role, State
from workflow.permissions import Actor, load_actor
from workflow.rooms import get_room, import_rooms, parse_rooms_csv
from workflow.workdays import WorkdayCalendar

ROOMS = """code,name,level,parent_code
CITY,市议事室,city,
D1,一区议事室,district,CITY
D2,二区议事室,district,CITY
T1,一镇议事室,town,D1
T2,二镇议事室,town,D1
T3,三镇议事室,town,D2
V1,一村议事室,village,T1
V2,二村议事室,village,T1
V3,三村议事室,village,T2
V4,四村议事室,village,T3
OTHER,外市议事室,city,
X,外市村议事室,village,OTHER
"""

#: Who holds which role where. "admin@CITY" can act on every staff step below the city.
GRANTS = [
    (room, role)
    for room in ("V1", "V2", "V3", "V4", "T1", "T2", "T3", "X")
    for role in (Role.CONVENER, Role.PARTY, Role.OPERATOR, Role.MEMBER, Role.GRID)
] + [
    ("D1", Role.SUPERVISOR),
    ("D2", Role.SUPERVISOR),
    ("T1", Role.SUPERVISOR),
    ("CITY", Role.ADMIN),
]

#: Valid fields for every action, for walking topics along.
FIELDS: dict[str, dict[str, Any]] = {
    "screen_accept": {"category": "协商议事", "reason": "涉及群众共同利益"},
    "decline": {"reason": "属个人纠纷", "contact_record": "电话沟通"},
    "redirect": {"kind": "意见建议", "handling": "转城管部门", "feedback": "已答复"},
    "transfer": {"to_room": "V2", "reason": "属二村辖区"},
    "refer_to_parent": {"other_room": "V2", "reason": "跨村道路"},
    "assign_room": {"to_room": "V2", "reason": "主要在二村"},
    "approve": {},
    "send_back": {"comment": "请补充背景"},
    "publish": {},
    "plan_research": {"plan": "走访沿线住户"},
    "record_findings": {"findings": "走访32户"},
    "schedule_meeting": {"time": "2026-03-20T19:00", "place": "村部会议室"},
    "skip_research": {"reason": "已有调研"},
    "cancel_meeting": {"reason": "改期另行通知"},
    "record_meeting": {"consensus": "建两座公厕"},
    "approve_outcome": {"implementer": "镇城管科", "measures": "立项施工", "due": "2026-06-30"},
    "publish_results": {},
    "record_progress": {"note": "已完成设计"},
    "complete": {"summary": "已投入使用"},
    "withdraw": {"reason": "已自行解决"},
    "send_back_outcome": {"comment": "请补充会议纪要"},
    "request_reply": {"department": "区交通局", "reply_due": "2026-04-30"},
    "record_reply": {"reply": "已列入年度计划"},
    "reopen": {"reason": "厕所还没有开放"},
}

#: The actions that bring a new topic (in V1) to each state.
ROUTES: dict[State, list[str]] = {
    State.SUBMITTED: [],
    State.REFERRED: ["refer_to_parent"],
    State.AWAITING_APPROVAL: ["screen_accept"],
    State.DECLINED: ["decline"],
    State.REDIRECTED: ["redirect"],
    State.WITHDRAWN: ["withdraw"],
}
_main = [
    "screen_accept",
    "approve",
    "publish",
    "plan_research",
    "record_findings",
    "schedule_meeting",
    "record_meeting",
    "approve_outcome",
    "publish_results",
    "complete",
]
_after = {
    State.APPROVED: "approve",
    State.PUBLICIZED: "publish",
    State.RESEARCHING: "plan_research",
    State.MEETING_SCHEDULED: "schedule_meeting",
    State.OUTCOME_REVIEW: "record_meeting",
    State.OUTCOME_APPROVED: "approve_outcome",
    State.RESULTS_PUBLISHED: "publish_results",
    State.IMPLEMENTED: "complete",
}
ROUTES |= {state: _main[: _main.index(action) + 1] for state, action in _after.items()}
ROUTES[State.AWAITING_REPLY] = [*ROUTES[State.RESULTS_PUBLISHED], "request_reply"]
ROUTES[State.REOPENED] = [*ROUTES[State.IMPLEMENTED], "reopen"]


@dataclass
class World:
    sessions: SessionFactory
    clock: FixedClock
    lifecycle: Lifecycle
    people: dict[tuple[str, str], int] = field(default_factory=dict)
    rooms: dict[str, int] = field(default_factory=dict)

    def person(self, room: str, role: str) -> int:
        return self.people[(room, role)]

    async def actor(self, person_id: int) -> Actor:
        async with self.sessions() as session:
            return await load_actor(session, person_id)

    async def open(
        self,
        room: str = "V1",
        resident: str = "resident",
        *,
        title: str = "运河步道增设公厕",
        background: str = "沿线3公里没有公厕",
        source: str = "public",
        by: int | None = None,
        **kw: Any,
    ) -> Topic:
        async with transaction(self.sessions) as session:
            actor = await load_actor(session, by or self.people[("-", resident)])
            room_row = await get_room(session, room)
            assert room_row is not None
            topic, _ = await self.lifecycle.open_topic(
                session,
                room=room_row,
                actor=actor,
                source=source,
                title=title,
                background=background,
                **kw,
            )
        return topic

    async def apply(
        self, topic: Topic, action: str, person_id: int, **fields: Any
    ) -> list[DomainEvent]:
        """Apply in a fresh transaction to a freshly loaded topic (as a handler would)."""
        async with transaction(self.sessions) as session:
            fresh = await session.get(Topic, topic.id)
            assert fresh is not None
            actor = await load_actor(session, person_id)
            events = await self.lifecycle.apply(session, fresh, action, actor, **fields)
        return events

    async def responsible(self, topic: Topic, action: str) -> int:
        """Someone who may take ``action`` on ``topic`` now."""
        async with self.sessions() as session:
            fresh = await session.get(Topic, topic.id)
            assert fresh is not None
            room = await session.get(Room, fresh.room_id)
        assert room is not None
        roles = TRANSITIONS[action].roles
        if SUBMITTER in roles:
            assert fresh.submitter_id is not None
            return fresh.submitter_id
        return self.person(room.code, sorted(roles)[0])

    async def walk(self, topic: Topic, actions: list[str]) -> Topic:
        for action in actions:
            fields = FIELDS[action]
            if action == "schedule_meeting":
                fields = {**fields, "time": await self.meeting_time(topic)}
            await self.apply(topic, action, await self.responsible(topic, action), **fields)
        return await self.reload(topic)

    async def meeting_time(self, topic: Topic) -> str:
        """FIELDS' meeting time, or for a topic publicized later than that allows (a week
        before the meeting), 19:00 on the eighth day after its publication."""
        published = (await self.reload(topic)).published_at
        wanted = datetime.fromisoformat(FIELDS["schedule_meeting"]["time"]).replace(tzinfo=CHINA)
        if published is None or wanted >= published + timedelta(days=7):
            return str(FIELDS["schedule_meeting"]["time"])
        day = published.astimezone(CHINA).date() + timedelta(days=8)
        return f"{day.isoformat()}T19:00"

    async def at(self, state: State, room: str = "V1") -> Topic:
        return await self.walk(await self.open(room), ROUTES[state])

    async def reload(self, topic: Topic) -> Topic:
        async with self.sessions() as session:
            fresh = await session.get(Topic, topic.id)
        assert fresh is not None
        return fresh


async def build_world(
    sessions: SessionFactory, clock: FixedClock, calendar: WorkdayCalendar | None = None
) -> World:
    calendar = calendar or WorkdayCalendar.load()
    lifecycle = Lifecycle(
        clock,
        calendar,
        listeners=[
            OutboxWriter(clock, "https://mashangyi.test", calendar),
            MeetingNotices(clock, "https://mashangyi.test"),
        ],
    )
    world = World(sessions, clock, lifecycle)
    async with transaction(sessions) as session:
        await import_rooms(session, parse_rooms_csv(ROOMS.encode()), clock.now())
        world.rooms = {r.code: r.id for r in (await session.exec(select(Room))).all()}

        async def person(key: tuple[str, str], name: str) -> int:
            row = Person(display_name=name)
            session.add(row)
            await session.flush()
            assert row.id is not None
            session.add(
                ChannelIdentity(
                    person_id=row.id, channel="console", external_id=f"{key[0]}:{key[1]}"
                )
            )
            world.people[key] = row.id
            return row.id

        for name in ("resident", "neighbour"):
            await person(("-", name), name)
        for room, role in GRANTS:
            pid = await person((room, role), f"{room}-{role}")
            session.add(RoleGrant(person_id=pid, room_id=world.rooms[room], role=role))
    return world
