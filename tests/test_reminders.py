"""The scheduler's reminder sweeps, driven by an injected clock through real holidays.

2026 calendar used below (chinese-calendar): Spring Festival holidays 02-15..02-23, 调休
working Saturdays 02-14 and 02-28; Mid-Autumn 09-25; National Day 10-01..10-07, 调休
working Sunday 09-20 and Saturday 10-10.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import text as sql_text
from sqlmodel import col, select

from notices.reminders import REMINDERS, ReminderSettings, Sweeper
from storage.db import SessionFactory, make_engine, make_session_factory, transaction
from storage.models import ChannelIdentity, OutboxMessage, ReminderSent, Topic
from tests.world import ROUTES, World, build_world
from workflow.clock import CHINA, FixedClock
from workflow.lifecycle import CLOCKED_STATES, State
from workflow.overdue import responsible_roles
from workflow.workdays import WorkdayCalendar

CALENDAR = WorkdayCalendar.load()
#: Every sweep of a day in the walks: before, at and after office hours.
TIMES = ("08:59", "09:00", "12:00", "17:29", "17:31", "22:00")


def at(day: str, hhmm: str = "10:00") -> datetime:
    """``at("02-24", "09:00")``: that moment in 2026, China time (``"2025-06-02"`` works too)."""
    full = day if day.count("-") == 2 else f"2026-{day}"
    return datetime.fromisoformat(f"{full}T{hhmm}").replace(tzinfo=CHINA)


def days(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(f"2026-{first}"), date.fromisoformat(f"2026-{last}")
    return [(start + timedelta(n)).strftime("%m-%d") for n in range((end - start).days + 1)]


@dataclass(frozen=True)
class Sent:
    when: str  # "02-24 09:00", China time
    kind: str  # "review.nudge"
    to: str  # "V1 convener", "- resident"
    topic: str | None  # topic number, None for lists
    text: str


KIND_ORDER = {f"reminder.{r.name}": n for n, r in enumerate(REMINDERS)}


class Watch:
    """Runs sweeps and reports the reminders each one wrote to the outbox."""

    def __init__(self, world: World, **settings: Any) -> None:
        self.world = world
        self.names = {pid: f"{room} {role}" for (room, role), pid in world.people.items()}
        self.sweeper = make_sweeper(world, **settings)
        self.seen = 0

    async def sweep(self, moment: datetime | None = None) -> list[Sent]:
        if moment is not None:
            self.world.clock.set(moment)
        report = await self.sweeper.run_once()
        assert report.failed == []
        return await self.new()

    async def new(self) -> list[Sent]:
        rows = await reminder_rows(self.world.sessions, after=self.seen)
        if rows:
            self.seen = max(m.id for m, _ in rows)
        # On PostgreSQL the kinds are given at the same time: within one sweep, list them
        # in the order they are declared (each kind's own messages keep their order).
        rows.sort(key=lambda row: (row[0].created_at, KIND_ORDER[row[0].kind], row[0].id))
        return [
            Sent(
                m.created_at.astimezone(CHINA).strftime("%m-%d %H:%M"),
                m.kind.removeprefix("reminder."),
                self.names[m.person_id],
                number,
                m.body["text"],
            )
            for m, number in rows
        ]

    async def walk(self, dates: list[str], times: tuple[str, ...] = TIMES) -> list[Sent]:
        sent: list[Sent] = []
        for day in dates:
            for hhmm in times:
                sent += await self.sweep(at(day, hhmm))
        return sent


def make_sweeper(world: World, sessions: SessionFactory | None = None, **settings: Any) -> Sweeper:
    return Sweeper(
        sessions or world.sessions,
        world.clock,
        CALENDAR,
        ReminderSettings(**settings),
        public_base_url="https://mashangyi.test",
    )


async def reminder_rows(
    sessions: SessionFactory, after: int = 0
) -> list[tuple[OutboxMessage, str | None]]:
    async with sessions() as session:
        rows = await session.exec(
            select(OutboxMessage, Topic.number)
            .join(Topic, col(Topic.id) == OutboxMessage.topic_id, isouter=True)
            .where(col(OutboxMessage.kind).startswith("reminder."), col(OutboxMessage.id) > after)
            .order_by(col(OutboxMessage.id))
        )
        return [(m, n) for m, n in rows]


def brief(sent: list[Sent]) -> list[tuple[str, str, str, str | None]]:
    return [(s.when, s.kind, s.to, s.topic) for s in sent]


@pytest.fixture
async def world(sessions: SessionFactory) -> World:
    return await build_world(sessions, FixedClock(at("02-09")), CALENDAR)


async def open_at(world: World, moment: datetime, room: str, title: str) -> Topic:
    world.clock.set(moment)
    return await world.open(room, title=title)


# -- who is responsible ---------------------------------------------------------------------


def test_responsibility_is_read_off_the_transition_table() -> None:
    assert {state: responsible_roles(state) for state in CLOCKED_STATES} == {
        State.SUBMITTED: {"convener"},
        State.REFERRED: {"convener", "supervisor"},
        State.AWAITING_APPROVAL: {"party"},
        State.OUTCOME_REVIEW: {"party"},
        # The department's reply is chased, and the reopened topic followed up, by the
        # room's convener and operator, and its implementer.
        State.AWAITING_REPLY: {"convener", "operator", "implementer"},
        State.REOPENED: {"convener", "operator", "implementer"},
    }
    assert responsible_roles(State.IMPLEMENTED) == frozenset()


# -- nudges through the Spring Festival ---------------------------------------------------------


async def test_spring_festival_nudges_only_on_working_days_in_office_hours(world: World) -> None:
    toilets = await open_at(world, at("02-09"), "V1", "运河步道增设公厕")  # first review
    lights = await world.walk(await open_at(world, at("02-09"), "V3", "小区路灯维修"), [])
    lights = await world.walk(lights, ["screen_accept"])  # Party approval, clock restarted
    assert toilets.review_due_at == lights.review_due_at == at("02-15", "00:00")  # 02-14 调休
    watch = Watch(world)

    sent = await watch.walk(days("02-09", "03-03"))

    a, b = toilets.number, lights.number
    nudges = [("review.nudge", "V1 convener", a), ("review.nudge", "V3 party", b)]
    expected = {
        "02-24": [
            *nudges,
            ("review.delayed", "- resident", a),
            ("review.delayed", "- resident", b),
        ],
        "02-25": nudges,
        "02-26": nudges,
        "02-27": [*nudges, ("review.escalated", "D1 supervisor", None)],
        "02-28": nudges,  # a 调休 Saturday is a working day
        "03-02": nudges,  # (03-01 is an ordinary Sunday)
        "03-03": nudges,
    }
    assert brief(sent) == [
        (f"{day} 09:00", *item) for day, items in expected.items() for item in items
    ]
    assert sent[0].text == (
        "【催办】议题 D1-2026-000001「运河步道增设公厕」在一村议事室「待初审」环节已等待 6 个"
        "工作日，办理期限（2月14日前）已过 1 个工作日，请尽快处理。如2月26日前仍未"
        "处理，将报县区政协督办。"
    )
    assert sent[1].text.startswith("【催办】议题 D1-2026-000002「小区路灯维修」在三村议事室")
    assert sent[2].text == (
        "您的议题「运河步道增设公厕」（编号 D1-2026-000001）目前处于「待初审」环节，已超过规定的"
        "五个工作日办理期限（2月14日前），很抱歉让您久等。我们已提醒一村议事室尽快办理，预计"
        "于2月26日前给您答复；逾期仍未办理的，将报县区政协督办。"
    )
    last = sent[-2].text  # 03-03: 5 + 7 working days waited, escalated by now
    assert "已等待 12 个工作日" in last and last.endswith("该议题已报县区政协督办。")
    rows = [m for m, _ in await reminder_rows(world.sessions)]
    nudge = next(m for m in rows if m.kind == "reminder.review.nudge")
    delayed = next(m for m in rows if m.kind == "reminder.review.delayed")
    assert nudge.body["buttons"] == [["处理", f"o:{toilets.id}"]]  # the review card
    assert delayed.body["buttons"] == [["查看议题", f"t:{toilets.id}"]]  # the submitter's view
    assert nudge.body["url"] == ""  # issue 11: a topic not yet public has no page to link


async def test_a_reminder_links_the_public_page_only_of_a_public_topic(world: World) -> None:
    world.clock.set(at("02-09"))
    waiting = await world.open("V1", title="运河步道增设公厕")  # first review: not public
    public = await world.walk(
        await world.open("V3", title="小区路灯维修"), ROUTES[State.OUTCOME_REVIEW]
    )
    await Watch(world).sweep(at("02-24", "09:00"))
    rows = {
        (m.kind, number): m.body
        for m, number in await reminder_rows(world.sessions)
        if m.kind != "reminder.review.escalated"
    }
    assert {key: body["url"] for key, body in rows.items()} == {
        ("reminder.review.nudge", waiting.number): "",
        ("reminder.review.delayed", waiting.number): "",
        ("reminder.review.nudge", public.number): f"https://mashangyi.test/t/{public.number}",
        ("reminder.review.delayed", public.number): f"https://mashangyi.test/t/{public.number}",
    }
    assert all("/t/" not in body["text"] for body in rows.values())


async def test_office_hours_are_half_open_and_configurable(world: World) -> None:
    topic = await open_at(world, at("02-09"), "V1", "运河步道增设公厕")
    watch = Watch(world)
    for hhmm in ("08:59", "17:30", "17:31", "23:59"):
        assert await watch.sweep(at("02-24", hhmm)) == []
    assert brief(await watch.sweep(at("02-25", "17:29")))[0] == (
        "02-25 17:29",
        "review.nudge",
        "V1 convener",
        topic.number,
    )
    early = Watch(world, work_start=time(7, 30), work_end=time(12, 0))
    early.seen = watch.seen
    assert [s.kind for s in await early.sweep(at("02-26", "07:30"))] == ["review.nudge"]
    assert await early.sweep(at("02-27", "12:00")) == []
    with pytest.raises(ValueError, match="work_end must be later"):
        ReminderSettings(work_start=time(18), work_end=time(9))


async def test_national_day_escalates_on_the_10_10_make_up_saturday(world: World) -> None:
    topic = await open_at(world, at("09-21"), "V4", "村道硬化")
    # Five working days: 09-22, 23, 24, (25 Mid-Autumn), 28, 29 → due at the end of 09-29;
    # three more: 09-30, (10-01..07 National Day), 10-08, 10-09 → escalated on 10-10.
    assert topic.review_due_at == at("09-30", "00:00")
    watch = Watch(world)

    sent = await watch.walk(days("09-21", "10-12"), ("08:00", "10:00", "20:00"))

    # (Q4 has begun: the yearly activity reminders come on 10-08 too, tested below.)
    assert {s.when for s in sent if s.kind.startswith("activity.")} == {"10-08 10:00"}
    sent = [s for s in sent if s.kind.startswith("review.")]
    nudge = ("review.nudge", "V4 convener", topic.number)
    assert brief(sent) == [
        ("09-30 10:00", *nudge),
        ("09-30 10:00", "review.delayed", "- resident", topic.number),
        ("10-08 10:00", *nudge),
        ("10-09 10:00", *nudge),
        ("10-10 10:00", *nudge),
        ("10-10 10:00", "review.escalated", "D2 supervisor", None),
        ("10-12 10:00", *nudge),
    ]
    assert sent[1].text.endswith("预计于10月9日前给您答复；逾期仍未办理的，将报县区政协督办。")
    assert sent[5].text == (
        "【超期督办】以下 1 个议题超过办理期限已满 3 个工作日仍未处理，请督促办理：\n"
        "1. D2-2026-000001「村道硬化」四村议事室·待初审，已等待 9 个工作日（期限 9月29日前）"
    )


# -- escalation -----------------------------------------------------------------------------


async def test_escalation_lists_each_districts_topics_once(world: World) -> None:
    a = await open_at(world, at("02-09"), "V1", "运河步道增设公厕")
    b = await world.walk(await open_at(world, at("02-09"), "V3", "小区路灯维修"), ["screen_accept"])
    c = await open_at(world, at("02-09"), "V4", "村道硬化")
    await open_at(world, at("02-09"), "X", "外市议题")  # no supervisors above: nobody to tell
    d = await open_at(world, at("02-24"), "V2", "河道清淤")  # due 03-02, escalated 03-06
    watch = Watch(world)

    sent = await watch.walk(days("02-24", "03-10"), ("09:30",))

    lists = [s for s in sent if s.kind == "review.escalated"]
    assert [(s.when, s.to) for s in lists] == [
        ("02-27 09:30", "D1 supervisor"),
        ("02-27 09:30", "D2 supervisor"),
        ("03-06 09:30", "D1 supervisor"),
    ]
    assert lists[0].text.splitlines() == [
        "【超期督办】以下 2 个议题超过办理期限已满 3 个工作日仍未处理，请督促办理：",
        f"1. {a.number}「运河步道增设公厕」一村议事室·待初审，已等待 9 个工作日（期限 2月14日前）",
        f"2. {b.number}「小区路灯维修」三村议事室·待党组织审定，已等待 9 个工作日"
        "（期限 2月14日前）",
    ]
    assert c.number in lists[1].text and a.number not in lists[1].text
    assert lists[2].text.splitlines()[1] == (
        f"1. {d.number}「河道清淤」二村议事室·待初审，已等待 9 个工作日（期限 3月2日前）"
    )
    # The town's own supervisor grant is not district supervision.
    assert not [s for s in sent if s.to == "T1 supervisor"]


async def test_escalate_after_days_is_configurable(world: World) -> None:
    await open_at(world, at("02-09"), "V1", "运河步道增设公厕")
    watch = Watch(world, escalate_after_days=1)
    sent = await watch.walk(days("02-24", "02-26"), ("10:00",))
    assert [(s.when, s.kind) for s in sent if s.kind != "review.nudge"] == [
        ("02-24 10:00", "review.delayed"),
        ("02-25 10:00", "review.escalated"),
    ]
    assert sent[1].text.endswith("预计于2月24日前给您答复；逾期仍未办理的，将报县区政协督办。")


# -- steps move on -------------------------------------------------------------------------------


async def test_handling_the_step_stops_the_nudges_and_the_next_step_has_its_own(
    world: World,
) -> None:
    topic = await open_at(world, at("02-09"), "V1", "运河步道增设公厕")
    watch = Watch(world)
    first = await watch.sweep(at("02-24", "09:00"))
    assert [(s.kind, s.to) for s in first] == [
        ("review.nudge", "V1 convener"),
        ("review.delayed", "- resident"),
    ]
    world.clock.set(at("02-25", "10:00"))
    topic = await world.walk(topic, ["screen_accept"])  # due at the end of 03-03 now
    assert topic.review_due_at == at("03-04", "00:00")
    sent = await watch.walk(days("02-25", "03-05"), ("09:00", "16:00"))
    assert brief(sent) == [
        ("03-04 09:00", "review.nudge", "V1 party", topic.number),
        ("03-04 09:00", "review.delayed", "- resident", topic.number),  # a new step: told again
        ("03-05 09:00", "review.nudge", "V1 party", topic.number),
    ]
    assert "「待党组织审定」环节已等待 6 个工作日" in sent[0].text  # 02-26 … 03-04


async def test_a_transfer_lands_at_the_receiving_room_with_a_new_clock(world: World) -> None:
    topic = await open_at(world, at("02-09"), "V1", "运河步道增设公厕")
    watch = Watch(world)
    await watch.sweep(at("02-24", "09:00"))
    world.clock.set(at("02-24", "11:00"))
    topic = await world.walk(topic, ["transfer"])  # to V2, due at the end of 03-02
    sent = await watch.walk(days("02-24", "03-03"), ("09:00",))
    assert brief(sent) == [
        ("03-03 09:00", "review.nudge", "V2 convener", topic.number),
        ("03-03 09:00", "review.delayed", "- resident", topic.number),
    ]


async def test_a_referral_nudges_the_parent_rooms_convener_and_supervisor(world: World) -> None:
    topic = await world.walk(
        await open_at(world, at("02-09"), "V1", "跨村道路"), ["refer_to_parent"]
    )
    watch = Watch(world)
    sent = await watch.walk(["02-24", "02-27"], ("10:00",))
    assert brief(sent) == [
        ("02-24 10:00", "review.nudge", "T1 convener", topic.number),
        ("02-24 10:00", "review.nudge", "T1 supervisor", topic.number),
        ("02-24 10:00", "review.delayed", "- resident", topic.number),
        ("02-27 10:00", "review.nudge", "T1 convener", topic.number),
        ("02-27 10:00", "review.nudge", "T1 supervisor", topic.number),
        ("02-27 10:00", "review.escalated", "D1 supervisor", None),
    ]
    assert "在一镇议事室「待上级裁定受理议事室」环节" in sent[0].text


async def test_someone_without_a_chat_identity_is_told_once_they_have_one(world: World) -> None:
    await open_at(world, at("02-09"), "V1", "运河步道增设公厕")
    convener = world.person("V1", "convener")
    async with transaction(world.sessions) as session:
        identity = (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.person_id == convener))
        ).one()
        await session.delete(identity)
    watch = Watch(world)
    assert [s.to for s in await watch.sweep(at("02-24", "09:00"))] == ["- resident"]
    async with transaction(world.sessions) as session:
        session.add(ChannelIdentity(person_id=convener, channel="wechat", external_id="oV1"))
    [later] = await watch.sweep(at("02-24", "15:00"))
    assert (later.kind, later.to) == ("review.nudge", "V1 convener")
    message, _ = (await reminder_rows(world.sessions))[-1]
    assert (message.channel, message.address) == ("wechat", "oV1")


# -- restarts and failures ----------------------------------------------------------------------


async def test_a_restart_catches_up_without_duplicates(world: World, database_url: str) -> None:
    topic = await open_at(world, at("02-09"), "V1", "运河步道增设公厕")
    before = Watch(world)
    assert len(await before.sweep(at("02-24", "09:00"))) == 2
    # The process dies; a new one (new engine, new sweeper) starts the same day, then the
    # machine is off until Friday 02-27 afternoon.
    engine = make_engine(database_url)
    try:
        restarted = Watch(World(make_session_factory(engine), world.clock, world.lifecycle))
        restarted.names, restarted.seen = before.names, before.seen
        assert await restarted.sweep(at("02-24", "09:10")) == []
        sent = await restarted.sweep(at("02-27", "16:00"))
        assert brief(sent) == [
            ("02-27 16:00", "review.nudge", "V1 convener", topic.number),  # today's only
            ("02-27 16:00", "review.escalated", "D1 supervisor", None),
        ]
        assert await restarted.sweep(at("02-27", "16:10")) == []
    finally:
        await engine.dispose()
    async with world.sessions() as session:
        kinds = await session.exec(
            select(ReminderSent.kind, func.count())
            .group_by(col(ReminderSent.kind))
            .order_by(col(ReminderSent.kind))
        )
        assert list(kinds) == [
            ("review.delayed", 1),
            ("review.escalated", 1),
            ("review.nudge", 2),
        ]


@contextlib.asynccontextmanager
async def outbox_refusing(sessions: SessionFactory, kind: str) -> AsyncIterator[None]:
    """The database refuses to store outbox messages of ``kind`` (a trigger) until the block
    ends: a write failing at the end of a reminder kind's transaction."""
    statements = {
        "sqlite": [
            "CREATE TRIGGER refuse_kind BEFORE INSERT ON outbox_messages "
            f"WHEN NEW.kind = '{kind}' BEGIN SELECT RAISE(ABORT, 'database went away'); END"
        ],
        "postgresql": [
            "CREATE FUNCTION refuse_kind() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'database went away'; END $$",
            "CREATE TRIGGER refuse_kind BEFORE INSERT ON outbox_messages FOR EACH ROW "
            f"WHEN (NEW.kind = '{kind}') EXECUTE FUNCTION refuse_kind()",
        ],
    }
    undo = {
        "sqlite": ["DROP TRIGGER refuse_kind"],
        "postgresql": ["DROP TRIGGER refuse_kind ON outbox_messages", "DROP FUNCTION refuse_kind"],
    }

    async def run(given: dict[str, list[str]]) -> None:
        async with transaction(sessions) as session:
            conn = await session.connection()
            for statement in given[conn.dialect.name]:
                await conn.execute(sql_text(statement))

    await run(statements)
    try:
        yield
    finally:
        await run(undo)


async def test_a_sweep_that_fails_half_way_leaves_nothing_half_done(world: World) -> None:
    await open_at(world, at("02-09"), "V1", "运河步道增设公厕")
    await open_at(world, at("02-09"), "V2", "河道清淤")
    async with outbox_refusing(world.sessions, "reminder.review.delayed"):
        world.clock.set(at("02-24", "09:00"))
        report = await make_sweeper(world).run_once()
        assert (report.sent["review.nudge"], report.failed) == (2, ["review.delayed"])
        async with world.sessions() as session:
            recorded = await session.exec(select(ReminderSent.kind).order_by(col(ReminderSent.id)))
            assert list(recorded) == ["review.nudge", "review.nudge"]  # delayed ones rolled back

    watch = Watch(world)
    sent = await watch.sweep(at("02-24", "09:10"))
    assert [(s.kind, s.to) for s in sent] == [
        ("review.nudge", "V1 convener"),  # from the failed sweep, already in the outbox
        ("review.nudge", "V2 convener"),
        ("review.delayed", "- resident"),  # given now, once each
        ("review.delayed", "- resident"),
    ]
    assert await watch.sweep(at("02-24", "09:20")) == []


# -- two processes on PostgreSQL -------------------------------------------------------------


@pytest.mark.postgres_only("two processes on one database")
@pytest.mark.parametrize("lock", [True, False], ids=["advisory-lock", "unique-key-only"])
async def test_two_sweepers_on_postgresql_never_send_twice(
    world: World, database_url: str, lock: bool
) -> None:
    rooms = ["V1", "V2", "V3", "V4", "T1", "T2", "T3", "X"]
    topics = [
        await open_at(world, at("02-09"), rooms[n % len(rooms)], f"议题{n}") for n in range(40)
    ]
    other = make_engine(database_url)
    try:
        first = Sweeper(world.sessions, world.clock, CALENDAR, lock=lock)
        second = Sweeper(make_session_factory(other), world.clock, CALENDAR, lock=lock)
        world.clock.set(at("02-27", "09:30"))
        for _ in range(3):
            reports = await asyncio.gather(first.run_once(), second.run_once())
            assert [r.failed for r in reports] == [[], []]
        world.clock.set(at("02-28", "09:30"))
        await asyncio.gather(first.run_once(), second.run_once())
    finally:
        await other.dispose()

    rows = await reminder_rows(world.sessions)
    keys = [m.idempotency_key for m, _ in rows]
    assert len(keys) == len(set(keys))
    per_kind: dict[str, int] = {}
    for m, _ in rows:
        per_kind[m.kind] = per_kind.get(m.kind, 0) + 1
    assert per_kind == {
        "reminder.review.nudge": 2 * len(topics),  # one convener per room, two days
        "reminder.review.delayed": len(topics),
        "reminder.review.escalated": 2,  # D1's list and D2's; X has no supervisors
    }
    async with world.sessions() as session:
        escalated = await session.exec(
            select(func.count()).where(ReminderSent.kind == "review.escalated")
        )
        # Five topics per room: 25 under D1 (V1-V3, T1, T2), 10 under D2 (V4, T3), X's none.
        assert escalated.one() == 35
    nudged = [(m.person_id, m.topic_id, m.created_at) for m, _ in rows if m.kind.endswith("nudge")]
    assert len(nudged) == len(set(nudged))


# -- yearly activity ----------------------------------------------------------------------------


async def test_yearly_activity_reminders_come_in_the_fourth_quarter_once(world: World) -> None:
    async def meeting(room: str, moment: datetime) -> None:
        world.clock.set(moment)
        await world.at(State.OUTCOME_REVIEW, room)  # walks through record_meeting in ``room``

    await meeting("T3", at("2025-06-02"))  # last year: does not count
    await meeting("T1", at("03-02"))
    await meeting("T1", at("05-11"))
    await meeting("T2", at("06-01"))
    await meeting("V1", at("06-01"))  # a village's meeting is not its town's
    activity = tuple(r for r in REMINDERS if r.name.startswith("activity."))
    watch = Watch(world)
    watch.sweeper = Sweeper(world.sessions, world.clock, CALENDAR, reminders=activity)

    assert await watch.sweep(at("09-30", "10:00")) == []  # third quarter
    assert await watch.sweep(at("10-01", "10:00")) == []  # National Day
    sent = await watch.sweep(at("10-08", "09:00"))
    assert [(s.kind, s.to) for s in sent] == [
        ("activity.low", "T2 convener"),
        ("activity.low", "T3 convener"),
        ("activity.low_list", "D1 supervisor"),
        ("activity.low_list", "D2 supervisor"),
    ]
    assert sent[0].text == (
        "【年度活动提醒】二镇议事室2026年已开展协商议事活动 1 次。按照镇（街道、园区）议事室每年"
        "至少开展两次协商活动的要求，请在年底前做好安排。"
    )
    assert sent[3].text == (
        "【年度活动督导】2026年以下 1 个议事室开展协商议事活动不足两次：\n1. 三镇议事室：0 次"
    )
    for moment in (at("10-08", "15:00"), at("10-10", "10:00"), at("12-31", "16:00")):
        assert await watch.sweep(moment) == []


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MASHANGYI_REMINDERS_WORK_START": "9:00"}, "reminders.work_start: must be HH:MM"),
        ({"MASHANGYI_REMINDERS_WORK_END": "24:00"}, "reminders.work_end: must be HH:MM"),
        ({"MASHANGYI_REMINDERS_WORK_END": "08:30"}, "reminders.work_end: must be later than"),
        ({"MASHANGYI_REMINDERS_ESCALATE_AFTER_DAYS": "0"}, "escalate_after_days: must be greater"),
        ({"MASHANGYI_REMINDERS_SWEEP_MINUTES": "0"}, "sweep_minutes: must be greater than 0"),
    ],
)
def test_bad_reminder_settings_are_named(env: dict[str, str], message: str) -> None:
    from bot.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, env=env)


# -- bulk writes ---------------------------------------------------------------------------------


async def test_enqueue_many_skips_existing_keys_and_keeps_every_field(
    sessions: SessionFactory,
) -> None:
    from notices.message import OutboundMessage
    from notices.outbox import enqueue, enqueue_many
    from workflow.payloads import Button

    now = at("03-02")
    old, empty = OutboundMessage(text="旧"), OutboundMessage()
    second = OutboundMessage(text="二", buttons=(Button("查看议题", "t:1"),))
    async with transaction(sessions) as session:
        await enqueue(
            session, key="k1", channel="console", address="a", kind="x", message=old, now=now
        )
        await enqueue_many(
            session,
            [
                {"key": "k1", "channel": "console", "address": "a", "kind": "x", "message": empty},
                {
                    "key": "k2",
                    "channel": "wechat",
                    "address": "b",
                    "kind": "y",
                    "message": second,
                },
                {
                    "key": "k3",
                    "channel": "console",
                    "address": "c",
                    "kind": "y",
                    "message": empty,
                    "not_before": at("03-03"),
                },
            ],
            now=now,
        )
    async with sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
    assert [
        (
            m.idempotency_key,
            m.channel,
            m.address,
            m.kind,
            OutboundMessage.from_json(m.body),
            m.status,
            m.not_before,
        )
        for m in rows
    ] == [
        ("k1", "console", "a", "x", old, "pending", now),
        ("k2", "wechat", "b", "y", second, "pending", now),
        ("k3", "console", "c", "y", empty, "pending", at("03-03")),
    ]


@pytest.mark.parametrize(
    "subjects",
    [
        ["topic:1", "topic:2", "议题:三"],
        [""],  # one empty value: packed, it would split into no value at all
        ["", ""],
        ["a\x1fb", "c"],  # a separator inside a value
        ["\x1e", "d"],  # the null marker as a value
        ["x" * 40],
    ],
)
async def test_bulk_rows_and_look_ups_keep_awkward_values(
    sessions: SessionFactory, subjects: list[str]
) -> None:
    """``insert_many`` and ``among`` send many values as one parameter (packed text on
    PostgreSQL): every value comes back as it went in, NULLs included."""
    from sqlalchemy import Integer, String

    from storage.bulk import insert_many
    from storage.sql import among

    now = at("03-02")
    rows = [
        {
            "kind": "k",
            "period": "",
            "subject": subject,
            "occurrence": str(n),
            "person_id": n + 1,
            "topic_id": None if n % 2 else n,
            "room_id": None,
            "sent_on": now.date(),
            "sent_at": now,
        }
        for n, subject in enumerate(subjects)
    ]
    async with transaction(sessions) as session:
        inserted = await insert_many(
            session,
            ReminderSent.__table__,
            rows,
            conflict=["kind", "period", "subject", "occurrence", "person_id"],
            returning=["subject", "topic_id"],
        )
    assert sorted(inserted, key=str) == sorted(
        [(r["subject"], r["topic_id"]) for r in rows], key=str
    )
    async with sessions() as session:
        query = select(ReminderSent.subject, ReminderSent.person_id)
        found = []
        distinct = sorted(set(subjects))
        for statement in among(session, query, col(ReminderSent.subject), distinct, String):
            found += list(await session.exec(statement))
        people = [r["person_id"] for r in rows]
        by_person = []
        for statement in among(session, query, col(ReminderSent.person_id), people, Integer):
            by_person += list(await session.exec(statement))
    expected = sorted((r["subject"], r["person_id"]) for r in rows)
    assert sorted(found) == expected
    assert sorted(by_person) == expected


@pytest.mark.postgres_only("SQLite does not enforce VARCHAR lengths")
@pytest.mark.parametrize("other", ["t" * 41, "\x1f" + "t" * 41])  # packed; an array
async def test_bulk_refuses_a_value_too_long_for_its_column(
    sessions: SessionFactory, other: str
) -> None:
    """Packed values are cast to text, not to the column's VARCHAR(n) (which would cut them
    silently): a value longer than the column is still refused by the database."""
    from storage.bulk import insert_many

    now = at("03-02")
    row = {
        "kind": "k",
        "period": "",
        "subject": "s" * 41,
        "occurrence": "1",
        "person_id": 1,
        "topic_id": None,
        "room_id": None,
        "sent_on": now.date(),
        "sent_at": now,
    }
    with pytest.raises(Exception, match="too long for type"):
        async with transaction(sessions) as session:
            await insert_many(
                session,
                ReminderSent.__table__,
                [row, {**row, "subject": other}],
                conflict=["kind", "period", "subject", "occurrence", "person_id"],
            )
