"""The lifecycle through ``Lifecycle.apply``: every path, every refusal, the audit trail."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import date, datetime, timedelta

import pytest
from sqlmodel import col, select

from storage.db import SessionFactory, transaction
from storage.models import OutboxMessage, Room, Topic, TopicEvent
from tests.world import FIELDS, ROUTES, World, build_world
from workflow.clock import CHINA, FixedClock
from workflow.errors import Conflict, InvalidField, MissingField, NotPermitted, WrongState
from workflow.lifecycle import FINAL_STATES, SUBMITTER, TRANSITIONS, Role, State
from workflow.permissions import Actor
from workflow.rooms import room_chain


@pytest.fixture
async def world(sessions: SessionFactory, clock: FixedClock) -> World:
    return await build_world(sessions, clock)


async def history(world: World, topic: Topic) -> list[TopicEvent]:
    async with world.sessions() as session:
        rows = await session.exec(
            select(TopicEvent).where(TopicEvent.topic_id == topic.id).order_by(col(TopicEvent.seq))
        )
        return list(rows)


async def test_opening_a_topic_starts_the_first_review_clock(world: World) -> None:
    topic = await world.open("V1")
    assert topic.number == "D1-2026-000001"
    assert topic.state == State.SUBMITTED
    assert topic.submitter_id == world.person("-", "resident")
    # Monday 2026-03-02 10:00 + five working days → due by the end of Monday 03-09.
    assert topic.review_due_at == datetime(2026, 3, 10, tzinfo=CHINA)
    [event] = await history(world, topic)
    assert (event.seq, event.action, event.from_state, event.to_state, event.actor_role) == (
        1,
        "submit",
        None,
        "submitted",
        SUBMITTER,
    )


async def test_numbers_count_per_district_and_year(world: World) -> None:
    numbers = [(await world.open(room)).number for room in ("V1", "V3", "V4", "T1", "D1")]
    assert numbers == [
        "D1-2026-000001",
        "D1-2026-000002",
        "D2-2026-000001",
        "D1-2026-000003",
        "D1-2026-000004",
    ]
    world.clock.set(datetime(2027, 1, 4, 9, tzinfo=CHINA))
    assert (await world.open("V1")).number == "D1-2027-000001"


async def test_the_whole_process_leaves_a_complete_ordered_trail(world: World) -> None:
    topic = await world.open("V1")
    steps = ROUTES[State.IMPLEMENTED][:]
    steps.insert(steps.index("record_findings") + 1, "record_findings")  # twice is fine
    steps.insert(steps.index("complete"), "record_progress")
    for action in steps:
        world.clock.advance(timedelta(hours=3))
        await world.apply(topic, action, await world.responsible(topic, action), **FIELDS[action])
    topic = await world.reload(topic)
    assert topic.state == State.IMPLEMENTED
    assert topic.review_due_at is None
    assert topic.category == "协商议事"
    assert topic.facts["approve_outcome"] == FIELDS["approve_outcome"]
    assert topic.facts["schedule_meeting"]["time"] == "2026-03-20T19:00:00+08:00"
    events = await history(world, topic)
    assert [e.action for e in events] == ["submit", *steps]
    assert [e.seq for e in events] == list(range(1, len(steps) + 2))
    assert all(a.at < b.at for a, b in itertools.pairwise(events))
    for before, after in itertools.pairwise(events):
        assert after.from_state == before.to_state
    assert events[-1].fields == {"summary": "已投入使用"}
    assert events[2].actor_id == world.person("V1", Role.PARTY)
    assert events[2].actor_role == Role.PARTY


async def test_publication_and_results_are_stamped_for_the_public_lists(world: World) -> None:
    topic = await world.walk(await world.open("V1"), ROUTES[State.APPROVED])
    assert (topic.published_at, topic.results_published_at) == (None, None)
    topic = await world.walk(topic, ["publish"])
    published = world.clock.now()
    assert topic.published_at == published
    world.clock.advance(timedelta(days=9))
    steps = ROUTES[State.RESULTS_PUBLISHED][ROUTES[State.RESULTS_PUBLISHED].index("publish") + 1 :]
    topic = await world.walk(topic, steps)
    assert topic.published_at == published  # later steps leave it as it was
    assert topic.results_published_at == world.clock.now()


@pytest.mark.parametrize("action", ["decline", "redirect", "withdraw"])
async def test_closing_paths(world: World, action: str) -> None:
    topic = await world.walk(await world.open("V1"), [action])
    assert topic.state in FINAL_STATES
    assert topic.review_due_at is None
    assert topic.facts[action] == FIELDS[action]
    if action == "redirect":
        assert topic.category == "意见建议"


async def test_review_steps_restart_the_clock(world: World) -> None:
    topic = await world.open("V1")
    world.clock.set(datetime(2026, 3, 4, 15, tzinfo=CHINA))  # Wednesday
    topic = await world.walk(topic, ["screen_accept"])
    assert topic.state == State.AWAITING_APPROVAL
    assert topic.step_started_at == datetime(2026, 3, 4, 15, tzinfo=CHINA)
    assert topic.review_due_at == datetime(2026, 3, 12, tzinfo=CHINA)  # end of Wed 03-11
    world.clock.set(datetime(2026, 3, 5, 9, tzinfo=CHINA))
    topic = await world.walk(topic, ["send_back"])
    assert topic.state == State.SUBMITTED
    assert topic.review_due_at == datetime(2026, 3, 13, tzinfo=CHINA)
    topic = await world.walk(topic, ["screen_accept", "approve"])
    assert topic.review_due_at is None  # publication has no review clock


async def test_a_review_clock_across_the_spring_festival(world: World) -> None:
    world.clock.set(datetime(2026, 2, 13, 16, tzinfo=CHINA))  # Friday before the holiday
    topic = await world.open("V1")
    # 02-14 (Sat) is a 调休 working day, 02-15..23 holiday, then 24, 25, 26, 27 → 02-27.
    assert topic.review_due_at == datetime(2026, 2, 28, tzinfo=CHINA)


async def test_party_may_edit_title_and_background_and_both_are_kept(world: World) -> None:
    topic = await world.walk(await world.open("V1"), ["screen_accept"])
    await world.apply(
        topic,
        "approve",
        world.person("V1", Role.PARTY),
        title="运河步道沿线公厕建设",
        background="  清楚的公示背景  ",
    )
    topic = await world.reload(topic)
    assert (topic.title, topic.background) == ("运河步道沿线公厕建设", "清楚的公示背景")
    event = (await history(world, topic))[-1]
    assert event.fields["previous_title"] == "运河步道增设公厕"
    assert event.fields["previous_background"] == "沿线3公里没有公厕"


async def test_transfer_moves_the_topic_and_its_authority(world: World) -> None:
    topic = await world.open("V1")
    await world.apply(
        topic, "transfer", world.person("V1", Role.CONVENER), to_room="V3", reason="属三村"
    )
    topic = await world.reload(topic)
    assert (topic.room_id, topic.state) == (world.rooms["V3"], State.SUBMITTED)
    event = (await history(world, topic))[-1]
    assert (event.from_room_id, event.room_id) == (world.rooms["V1"], world.rooms["V3"])
    with pytest.raises(NotPermitted):
        await world.apply(topic, "decline", world.person("V1", Role.CONVENER), **FIELDS["decline"])
    await world.apply(
        topic, "screen_accept", world.person("V3", Role.CONVENER), **FIELDS["screen_accept"]
    )
    assert (await world.reload(topic)).state == State.AWAITING_APPROVAL


async def test_transfer_to_the_same_or_an_unknown_room_is_refused(world: World) -> None:
    topic = await world.open("V1")
    convener = world.person("V1", Role.CONVENER)
    with pytest.raises(InvalidField, match="请选择其他议事室"):
        await world.apply(topic, "transfer", convener, to_room="V1", reason="r")
    with pytest.raises(InvalidField, match="找不到编号为「NOPE」的议事室"):
        await world.apply(topic, "transfer", convener, to_room="NOPE", reason="r")
    assert len(await history(world, topic)) == 1


async def test_a_jurisdiction_dispute_goes_to_the_nearest_common_parent(world: World) -> None:
    topic = await world.open("V1")
    await world.apply(
        topic,
        "refer_to_parent",
        world.person("V1", Role.CONVENER),
        other_room="V3",
        reason="道路跨两村",
    )
    topic = await world.reload(topic)
    assert (topic.state, topic.room_id) == (State.REFERRED, world.rooms["D1"])  # V1,V3 → D1
    # D1 has no convener in this world; its supervisor names the room.
    with pytest.raises(NotPermitted):
        await world.apply(
            topic, "assign_room", world.person("T1", Role.CONVENER), to_room="V3", reason="r"
        )
    with pytest.raises(InvalidField, match="不在「一区议事室」的管辖范围内"):
        await world.apply(
            topic, "assign_room", world.person("D1", Role.SUPERVISOR), to_room="V4", reason="r"
        )
    await world.apply(
        topic, "assign_room", world.person("D1", Role.SUPERVISOR), to_room="V3", reason="主要在三村"
    )
    topic = await world.reload(topic)
    assert (topic.state, topic.room_id) == (State.SUBMITTED, world.rooms["V3"])
    assert [e.action for e in await history(world, topic)] == [
        "submit",
        "refer_to_parent",
        "assign_room",
    ]


async def test_siblings_dispute_goes_to_their_town(world: World) -> None:
    topic = await world.open("V1")
    await world.apply(
        topic, "refer_to_parent", world.person("V1", Role.CONVENER), other_room="V2", reason="r"
    )
    topic = await world.reload(topic)
    assert topic.room_id == world.rooms["T1"]
    await world.apply(
        topic, "assign_room", world.person("T1", Role.CONVENER), to_room="V2", reason="r"
    )
    assert (await world.reload(topic)).room_id == world.rooms["V2"]


async def test_a_dispute_with_no_common_parent_is_refused(world: World) -> None:
    topic = await world.open("V1")
    with pytest.raises(InvalidField, match="没有共同的上级议事室"):
        await world.apply(
            topic, "refer_to_parent", world.person("V1", Role.CONVENER), other_room="X", reason="r"
        )


async def test_no_research_no_consultation(world: World) -> None:
    topic = await world.walk(await world.open("V1"), ROUTES[State.PUBLICIZED] + ["plan_research"])
    convener = world.person("V1", Role.CONVENER)
    async with world.sessions() as session:
        actions = await world.lifecycle.available_actions(
            session, topic, Actor(convener, frozenset({(world.rooms["V1"], "convener")}))
        )
    assert actions == ["record_findings", "skip_research"]
    with pytest.raises(WrongState, match="尚未「上传调研成果」，不能「安排协商会议」"):
        await world.apply(topic, "schedule_meeting", convener, **FIELDS["schedule_meeting"])
    assert (await world.reload(topic)).state == State.RESEARCHING
    # Unless the convener records why: then the meeting may be scheduled, and the reason is
    # in the topic's history.
    with pytest.raises(MissingField, match="请填写「理由」"):
        await world.apply(topic, "skip_research", convener)
    await world.apply(topic, "skip_research", convener, reason="上月已就同一事项入户调研")
    await world.apply(topic, "schedule_meeting", convener, **FIELDS["schedule_meeting"])
    topic = await world.reload(topic)
    assert topic.state == State.MEETING_SCHEDULED
    assert topic.facts["skip_research"] == {"reason": "上月已就同一事项入户调研"}


async def test_every_action_is_refused_in_every_other_state(world: World) -> None:
    admin = world.person("CITY", Role.ADMIN)
    topics = {state: await world.at(state) for state in State}
    refused = 0
    for action, transition in TRANSITIONS.items():
        for state, topic in topics.items():
            if state in transition.sources:
                continue
            who = topic.submitter_id if SUBMITTER in transition.roles else admin
            assert who is not None
            with pytest.raises(WrongState) as caught:
                await world.apply(topic, action, who, **FIELDS[action])
            assert caught.value.params["action"]
            refused += 1
    assert refused > 150
    for state, topic in topics.items():  # and nothing changed
        assert (await world.reload(topic)).state == state


@pytest.mark.parametrize("action", list(TRANSITIONS))
async def test_every_action_is_refused_to_the_wrong_people(world: World, action: str) -> None:
    transition = TRANSITIONS[action]
    state = next(s for s in ROUTES if s in transition.sources)
    topic = await world.at(state)
    room = "T1" if state == State.REFERRED else "V1"
    wrong = [
        world.person("-", "neighbour"),
        world.person("V2", Role.CONVENER),
        world.person("V2", Role.PARTY),
        world.person("D1", Role.SUPERVISOR),
    ]
    wrong += [
        world.person(room, role)
        for role in Role
        if role not in transition.roles and (room, role) in world.people
    ]
    if SUBMITTER in transition.roles:
        wrong.append(world.person("CITY", Role.ADMIN))
    for person in wrong:
        with pytest.raises(NotPermitted, match="您没有权限"):
            await world.apply(topic, action, person, **FIELDS[action])
    assert (await world.reload(topic)).version == topic.version


@pytest.mark.parametrize(
    ("action", "name"),
    [(a, f) for a, t in TRANSITIONS.items() for f in t.required],
)
async def test_every_required_field_is_required(world: World, action: str, name: str) -> None:
    state = next(s for s in ROUTES if s in TRANSITIONS[action].sources)
    topic = await world.at(state)
    fields = {**FIELDS[action], name: "   "}
    with pytest.raises(MissingField) as caught:
        await world.apply(topic, action, await world.responsible(topic, action), **fields)
    assert caught.value.message.startswith("请填写「")
    del fields[name]
    with pytest.raises(MissingField):
        await world.apply(topic, action, await world.responsible(topic, action), **fields)


async def test_field_values_are_checked(world: World) -> None:
    topic = await world.open("V1")
    convener = world.person("V1", Role.CONVENER)
    # Accepting classifies a topic for consultation; the other four are redirects.
    with pytest.raises(InvalidField, match="「议题类别」只能是：协商议事。"):
        await world.apply(topic, "screen_accept", convener, category="意见建议", reason="r")
    with pytest.raises(InvalidField, match="「议题类别」只能是：协商议事。"):
        await world.apply(topic, "screen_accept", convener, category="别的", reason="r")
    with pytest.raises(InvalidField, match="「理由」最多 500 个字，您输入了 501 个字"):
        await world.apply(topic, "screen_accept", convener, category="协商议事", reason="长" * 501)
    with pytest.raises(InvalidField, match="「受理」操作不需要填写「会议地点」"):
        await world.apply(
            topic, "screen_accept", convener, category="协商议事", reason="r", place="x"
        )
    topic = await world.at(State.OUTCOME_REVIEW)
    with pytest.raises(InvalidField, match="「完成时限」不是有效的日期"):
        await world.apply(
            topic,
            "approve_outcome",
            world.person("V1", Role.PARTY),
            **{**FIELDS["approve_outcome"], "due": "明年春天"},
        )
    topic = await world.at(State.RESEARCHING)
    await world.apply(topic, "record_findings", convener, findings="f")
    with pytest.raises(InvalidField, match="网址"):
        await world.apply(
            topic,
            "schedule_meeting",
            convener,
            **{**FIELDS["schedule_meeting"], "link": "javascript:alert(1)"},
        )


async def test_who_may_open_a_topic_from_each_source(world: World) -> None:
    resident = world.person("-", "resident")
    for source in ("member", "party", "grid", "hotline"):
        with pytest.raises(NotPermitted, match="您没有以「"):
            await world.open("V1", source=source, by=resident)
    member = await world.open("V1", source="member", by=world.person("V1", Role.MEMBER))
    assert (member.source, member.submitter_id) == ("member", world.person("V1", Role.MEMBER))
    pushed = await world.open(
        "V1", source="grid", by=world.person("V1", Role.GRID), submitter_id=resident
    )
    assert pushed.submitter_id == resident
    [event] = await history(world, pushed)
    assert (event.actor_id, event.actor_role) == (world.person("V1", Role.GRID), "grid")
    with pytest.raises(NotPermitted):  # a grid worker of another village
        await world.open("V1", source="grid", by=world.person("V2", Role.GRID))
    hotline = await world.open("V3", source="hotline", by=world.person("CITY", Role.ADMIN))
    assert hotline.source == "hotline"


async def test_titles_are_checked_when_opening(world: World) -> None:
    with pytest.raises(InvalidField, match="「议题标题」最多 40 个字"):
        await world.open("V1", title="长" * 41)
    with pytest.raises(MissingField, match="请填写「议题标题」"):
        await world.open("V1", title="  ")
    kept = await world.open("V1", title="  路灯不亮😢 ＡＢＣ 臺灣  ")
    assert kept.title == "路灯不亮😢 ＡＢＣ 臺灣"


async def test_available_actions_follow_role_and_state(world: World) -> None:
    topic = await world.open("V1")
    cases = {
        world.person("V1", Role.CONVENER): [
            "screen_accept",
            "decline",
            "redirect",
            "transfer",
            "refer_to_parent",
        ],
        world.person("V1", Role.PARTY): [],
        world.person("-", "resident"): ["withdraw"],
        world.person("-", "neighbour"): [],
        world.person("D1", Role.SUPERVISOR): [],
    }
    async with world.sessions() as session:
        for person, expected in cases.items():
            actor = await world.actor(person)
            assert await world.lifecycle.available_actions(session, topic, actor) == expected


async def test_a_revoked_role_no_longer_counts(world: World) -> None:
    from storage.models import RoleGrant

    topic = await world.open("V1")
    convener = world.person("V1", Role.CONVENER)
    async with transaction(world.sessions) as session:
        grant = (await session.exec(select(RoleGrant).where(RoleGrant.person_id == convener))).one()
        grant.revoked_at = world.clock.now()
    with pytest.raises(NotPermitted):
        await world.apply(topic, "decline", convener, **FIELDS["decline"])


async def test_two_reviewers_at_once_exactly_one_wins(world: World) -> None:
    topic = await world.open("V1")
    convener = world.person("V1", Role.CONVENER)
    admin = world.person("CITY", Role.ADMIN)
    results = await asyncio.gather(
        world.apply(topic, "decline", convener, **FIELDS["decline"]),
        world.apply(topic, "screen_accept", admin, **FIELDS["screen_accept"]),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], Conflict | WrongState)
    events = await history(world, topic)
    assert len(events) == 2  # submit + the winner


async def test_a_stale_copy_is_refused_not_overwritten(world: World) -> None:
    topic = await world.open("V1")
    convener = world.person("V1", Role.CONVENER)
    async with world.sessions() as session:
        stale = await session.get(Topic, topic.id)
    await world.apply(topic, "decline", convener, **FIELDS["decline"])
    async with transaction(world.sessions) as session:
        assert stale is not None
        session.add(stale)
        with pytest.raises(Conflict, match="已被他人处理"):
            await world.lifecycle.apply(
                session,
                stale,
                "screen_accept",
                await world.actor(world.person("CITY", Role.ADMIN)),
                **FIELDS["screen_accept"],
            )
    assert (await world.reload(topic)).state == State.DECLINED


async def test_changes_reach_the_outbox_in_the_same_transaction(world: World) -> None:
    topic = await world.open("V1")
    await world.apply(topic, "decline", world.person("V1", Role.CONVENER), **FIELDS["decline"])
    async with world.sessions() as session:
        rows = list(await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))
    assert [(r.kind, r.address) for r in rows] == [
        ("topic.submitted", "V1:convener"),  # the convener has work; the resident acted
        ("topic.declined", "-:resident"),  # the convener acted; the resident is told
    ]
    assert "属个人纠纷" in rows[1].body["text"]
    assert rows[1].body["url"] == ""  # issue 11: a declined topic has no public page
    assert "请于3月9日前完成初审" in rows[0].body["text"]


async def test_notices_link_the_public_page_only_once_the_topic_is_public(world: World) -> None:
    """Issue 11: no /t/ link goes out for a topic still in review, declined, redirected or
    withdrawn (the page would be a 404); from publication on every notice carries it."""
    done = await world.at(State.IMPLEMENTED)
    closed = [
        await world.at(state) for state in (State.DECLINED, State.REDIRECTED, State.WITHDRAWN)
    ]
    async with world.sessions() as session:
        rows = list(await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))
    url = f"https://mashangyi.test/t/{done.number}"
    linked = [r.kind for r in rows if r.topic_id == done.id and r.body["url"] == url]
    unlinked = [r.kind for r in rows if r.topic_id == done.id and r.body["url"] == ""]
    assert set(unlinked) == {"topic.submitted", "topic.accepted", "topic.approved"}
    assert set(linked) == {
        "topic.publicized",
        "topic.research_planned",
        "topic.meeting_scheduled",
        "topic.meeting_recorded",
        "topic.outcome_approved",
        "topic.results_published",
        "topic.implemented",
        "notice.printable",  # the convener's notice to print, on publication and on results
    }
    assert len(linked) + len(unlinked) == len([r for r in rows if r.topic_id == done.id])
    for topic in closed:
        bodies = [r.body for r in rows if r.topic_id == topic.id]
        assert bodies and all(b["url"] == "" and "/t/" not in b["text"] for b in bodies)


async def test_a_due_date_reads_the_same_in_every_notice(world: World) -> None:
    """Issue 11: one rule (the end of the fifth working day) and one way to show it."""
    topic = await world.open("V1")  # Mon 03-02: due by the end of Mon 03-09
    await world.walk(topic, ["refer_to_parent"])  # a new clock the same day
    async with world.sessions() as session:
        texts = [m.body["text"] for m in await session.exec(select(OutboxMessage))]
    dates = [d for t in texts for d in re.findall(r"\d+年\S*|\d+月\d+日\S?", t)]
    assert len(texts) >= 3 and set(dates) == {"3月9日前"}, texts


async def test_a_refused_action_writes_nothing(world: World) -> None:
    topic = await world.open("V1")
    with pytest.raises(NotPermitted):
        await world.apply(topic, "decline", world.person("V2", Role.CONVENER), **FIELDS["decline"])
    async with world.sessions() as session:
        outbox = list(await session.exec(select(OutboxMessage)))
    assert len(outbox) == 1 and len(await history(world, topic)) == 1


async def test_meeting_time_without_zone_is_china_time(world: World) -> None:
    topic = await world.at(State.MEETING_SCHEDULED)
    facts = (await world.reload(topic)).facts
    assert datetime.fromisoformat(facts["schedule_meeting"]["time"]) == datetime(
        2026, 3, 20, 19, tzinfo=CHINA
    )
    assert date.fromisoformat(FIELDS["approve_outcome"]["due"]) == date(2026, 6, 30)


async def test_a_rooms_chain_runs_nearest_first_and_survives_a_broken_table(
    world: World, sessions: SessionFactory
) -> None:
    async with sessions() as session:
        village = (await session.exec(select(Room).where(Room.code == "V1"))).one()
        assert village.id is not None
        chain = await room_chain(session, village.id)
        assert [r.code for r in chain] == ["V1", "T1", "D1", "CITY"]
    # Imports refuse cycles; a table edited by hand into one still gives each room once.
    async with transaction(sessions) as session:
        city = (await session.exec(select(Room).where(Room.code == "CITY"))).one()
        city.parent_id = village.id
    async with sessions() as session:
        looped = await room_chain(session, village.id)
    assert [r.code for r in looped] == ["V1", "T1", "D1", "CITY"]
