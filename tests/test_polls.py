"""Screening polls: workflow/polls.py on the database, the closing sweep (a task of the
reminder sweep, telling through a push job: each voter once, also across a failed sweep and
a restart of the expansion), the room's followers told that a poll opened, and the chat
(dialogs/polls.py, console channel)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.config import load_config
from bot.services import Services, build_services
from dialogs.types import Reply
from notices import poll_pushes
from notices.message import as_buttons
from notices.pushes import PushExpander
from notices.reminders import Sweeper
from notices.reminders.finders import TASKS
from storage.db import SessionFactory, transaction
from storage.models import OutboxMessage, Room, Topic
from storage.participation import Follow, Poll, PollVote
from tests.test_public_dialogs import Person
from tests.test_pushes import follow
from tests.world import World, build_world
from workflow import polls
from workflow.clock import FixedClock
from workflow.errors import InvalidField, NotPermitted, WrongState
from workflow.lifecycle import Role, State
from workflow.permissions import load_actor
from workflow.workdays import WorkdayCalendar


@pytest.fixture
async def world(sessions: SessionFactory, clock: FixedClock) -> World:
    return await build_world(sessions, clock)


async def _topics(world: World, n: int, state: State = State.PUBLICIZED) -> list[Topic]:
    return [await world.at(state) for _ in range(n)]


async def _create(world: World, topics: list[Topic], *, by: str = "V1", hours: int = 48) -> Poll:
    async with transaction(world.sessions) as session:
        actor = await load_actor(session, world.person(by, Role.CONVENER))
        room = await session.get(Room, world.rooms["V1"])
        assert room is not None
        closes = world.clock.now() + timedelta(hours=hours)
        ids = [t.id for t in topics if t.id is not None]
        return await polls.create_poll(
            session, actor, room, "筛选投票", ids, closes, world.clock.now()
        )


async def _vote(world: World, person: int, poll: Poll, n: int) -> bool:
    async with transaction(world.sessions) as session:
        assert poll.id is not None
        option = (await polls.options(session, poll.id))[n]
        return await polls.vote(session, person, poll.id, option.id, world.clock.now())


async def _results(world: World, poll: Poll) -> list[tuple[str, int]]:
    async with world.sessions() as session:
        fresh = await session.get(Poll, poll.id)
        assert fresh is not None
        return [
            (t.option.title, t.votes)
            for t in await polls.results(session, fresh, world.clock.now())
        ]


async def test_only_the_rooms_convener_creates_a_poll_of_its_public_topics(world: World) -> None:
    topics = await _topics(world, 2)
    with pytest.raises(NotPermitted):
        await _create(world, topics, by="V2")
    with pytest.raises(InvalidField, match="2 到 10 个"):
        await _create(world, topics[:1])
    with pytest.raises(InvalidField, match="已公示"):
        await _create(world, [topics[0], await world.at(State.APPROVED)])
    with pytest.raises(InvalidField, match="截止时间"):
        await _create(world, topics, hours=0)
    with pytest.raises(InvalidField, match="截止时间"):
        await _create(world, topics, hours=24 * 31)
    poll = await _create(world, topics)
    assert poll.closed_at is None and poll.created_by_id == world.person("V1", Role.CONVENER)


async def test_one_vote_per_person_double_taps_and_all_at_once(world: World) -> None:
    poll = await _create(world, await _topics(world, 2))
    resident = world.person("-", "resident")
    assert await _vote(world, resident, poll, 0) is True
    assert await _vote(world, resident, poll, 0) is False  # the double tap
    with pytest.raises(WrongState, match="只能投一票"):
        await _vote(world, resident, poll, 1)
    neighbour = world.person("-", "neighbour")
    results = await asyncio.gather(
        *(_vote(world, neighbour, poll, 1) for _ in range(3)), return_exceptions=True
    )
    assert sorted(map(str, results)) == ["False", "False", "True"]
    async with world.sessions() as session:
        votes = (await session.exec(select(PollVote).order_by(col(PollVote.id)))).all()
    assert [(v.person_id, v.option_id) for v in votes] == [
        (resident, votes[0].option_id),
        (neighbour, votes[1].option_id),
    ]


async def test_no_live_results_and_no_votes_after_closing(world: World) -> None:
    poll = await _create(world, await _topics(world, 2))
    await _vote(world, world.person("-", "resident"), poll, 1)
    with pytest.raises(WrongState, match="结果将在"):
        await _results(world, poll)
    world.clock.advance(timedelta(hours=48))
    with pytest.raises(WrongState, match="已于3月4日 10:00截止"):
        await _vote(world, world.person("-", "neighbour"), poll, 0)
    assert await _results(world, poll) == [("运河步道增设公厕", 1), ("运河步道增设公厕", 0)]


def closing_sweeper(world: World) -> Sweeper:
    """The sweep with its tasks only (the poll closing), as the scheduler runs it."""
    return Sweeper(world.sessions, world.clock, WorkdayCalendar.load(), reminders=(), tasks=TASKS)


async def told_of_result(world: World) -> list[OutboxMessage]:
    async with world.sessions() as session:
        found = await session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "push.poll.closed")
            .order_by(col(OutboxMessage.id))
        )
        return list(found)


async def test_the_sweep_closes_once_and_tells_each_voter_the_result_once(
    world: World, database_url: str
) -> None:
    first, second = await _topics(world, 2)
    async with transaction(world.sessions) as session:
        row = await session.get(Topic, second.id)
        assert row is not None
        row.title = "小区雨天积水严重"
    poll = await _create(world, [first, second])
    voters = [world.person("-", "resident"), world.person("-", "neighbour")]
    await _vote(world, voters[0], poll, 1)
    await _vote(world, voters[1], poll, 1)
    sweeper = closing_sweeper(world)
    assert (await sweeper.run_once()).sent == {"poll.closed": 0}  # still open
    world.clock.advance(timedelta(hours=58))  # Wednesday 20:00: after office hours
    report = await sweeper.run_once()
    assert report.sent == {"poll.closed": 1}  # one poll closed
    assert (await sweeper.run_once()).sent == {"poll.closed": 0}
    await PushExpander(world.sessions, world.clock).run_once()
    told = await told_of_result(world)
    async with world.sessions() as session:
        closed = await session.get(Poll, poll.id)
    assert closed is not None and closed.closed_at == world.clock.now()
    assert sorted(m.person_id for m in told if m.person_id is not None) == sorted(
        [*voters, world.person("V1", Role.CONVENER)]
    )
    text = told[0].body["text"]
    assert "已截止，共 2 票" in text and "1. 小区雨天积水严重：2 票" in text
    assert "2. 运河步道增设公厕：0 票" in text
    assert told[0].body["buttons"] == [["查看投票结果", f"pv:{poll.id}:0"]]
    # A later vote is refused, and changes nothing.
    with pytest.raises(WrongState):
        await _vote(world, world.person("V2", Role.GRID), poll, 0)


async def test_each_voter_is_told_once_across_a_failed_sweep_and_a_restart(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    poll = await _create(world, await _topics(world, 2))
    voters = [world.person(room, role) for room in ("V2", "V3") for role in ("grid", "member")]
    for n, voter in enumerate(voters):
        await _vote(world, voter, poll, n % 2)
    world.clock.advance(timedelta(hours=48))

    # The sweep dies after closing, before its commit: nothing is closed, nobody told.
    real = poll_pushes.push_poll_closed

    async def dies(*args: object, **kwargs: object) -> bool:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(poll_pushes, "push_poll_closed", dies)
    assert (await closing_sweeper(world).run_once()).failed == ["poll.closed"]
    async with world.sessions() as session:
        assert (await session.get(Poll, poll.id)).closed_at is None  # type: ignore[union-attr]
    monkeypatch.setattr(poll_pushes, "push_poll_closed", real)

    # The next sweep (a fresh process) closes it; sweeping again adds nothing.
    for _ in range(2):
        await closing_sweeper(world).run_once()
    # The expansion stops after two people (a restart), a new expander goes on from there.
    await PushExpander(world.sessions, world.clock, chunk=2).run_once(max_chunks=1)
    assert len(await told_of_result(world)) == 2
    await PushExpander(world.sessions, world.clock, chunk=2).run_once()
    await PushExpander(world.sessions, world.clock, chunk=2).run_once()  # nothing left
    told = [m.person_id for m in await told_of_result(world)]
    assert sorted(told) == sorted([*voters, world.person("V1", Role.CONVENER)])


@pytest.mark.postgres_only("row locks between a vote and the closing")
async def test_a_vote_racing_the_closing_is_counted_or_refused(world: World) -> None:
    poll = await _create(world, await _topics(world, 2), hours=1)
    world.clock.advance(timedelta(minutes=59, seconds=59))
    people = [world.person(room, role) for room in ("V2", "V3") for role in ("grid", "member")]

    async def close() -> list[int]:
        async with transaction(world.sessions) as session:
            return await polls.close_due(session, world.clock.now() + timedelta(seconds=1))

    outcome = await asyncio.gather(
        *(_vote(world, p, poll, 0) for p in people), close(), return_exceptions=True
    )
    counted = sum(1 for r in outcome[:-1] if r is True)
    async with world.sessions() as session:
        votes = (await session.exec(select(PollVote))).all()
    assert len(votes) == counted


# -- the chat ---------------------------------------------------------------------------


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


async def test_a_poll_in_the_chat_from_start_to_result(
    services: Services, clock: FixedClock
) -> None:
    world = await build_world(services.sessions, clock)
    topics = await _topics(world, 3)
    convener = Person(services, "V1:convener")
    await convener.send("start", payload="r_V1")
    assert "发起投票" in convener.labels()
    await convener.press("发起投票")
    assert convener.labels() == ["运河步道增设公厕"] * 3 + ["完成"]
    await convener.send("button", payload=f"pk:{topics[0].id}")
    await convener.press("完成")
    assert "请至少选择 2 个议题" in convener.text()
    await convener.send("button", payload=f"pk:{topics[1].id}")
    assert sorted(convener.labels()) == sorted(
        ["完成", "运河步道增设公厕"] + ["✓ 运河步道增设公厕"] * 2
    )
    await convener.press("完成")
    await convener.send(text="明天")
    assert "没有看懂" in convener.text()
    await convener.send(text="3")
    assert "投票已发起，将于3月5日 10:00截止" in convener.text()

    li = Person(services, "li")
    await li.send("start", payload="r_V1")
    await li.press("参与投票")
    assert "每人一票" in li.text() and len(li.labels()) == 2
    vote = li.last[-1].buttons[1].payload
    await li.send("button", payload=vote)
    assert "您已投票给" in li.text() and "截止后公布" in li.text()
    await li.send("button", payload=vote)  # the double tap
    assert "您已投票给" in li.text()
    async with services.sessions() as session:
        assert len((await session.exec(select(PollVote))).all()) == 1

    clock.advance(timedelta(days=3))
    await li.send("button", payload=vote)
    assert "投票已于3月5日 10:00截止，不能再投" in li.text() and "共 1 票" in li.text()
    assert "2. 运河步道增设公厕：0 票" in li.text()


async def test_a_poll_opened_is_pushed_to_the_rooms_followers_with_its_buttons(
    services: Services, clock: FixedClock
) -> None:
    world = await build_world(services.sessions, clock)
    topics = await _topics(world, 2)
    fan, elsewhere = world.person("-", "resident"), world.person("-", "neighbour")
    await follow(world, fan, room="V1")
    await follow(world, elsewhere, room="V2")
    await follow(world, world.person("V1", Role.CONVENER), room="V1")  # who opens it
    convener = Person(services, "V1:convener")
    await convener.send("start", payload="r_V1")
    await convener.press("发起投票")
    for topic in topics:
        await convener.send("button", payload=f"pk:{topic.id}")
    await convener.press("完成")
    await convener.send(text="3")
    assert "投票已发起" in convener.text()
    for _ in range(2):  # a second expander finds nothing more to do
        await services.push_expander().run_once()

    async with services.sessions() as session:
        pushed = list(
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.kind == "push.poll.opened")
            )
        )
        poll = (await session.exec(select(Poll))).one()
    assert [m.person_id for m in pushed] == [fan]
    body = pushed[0].body
    assert body["text"].startswith(
        "一村议事室发起了网络投票「一村议事室议题筛选投票」，3月5日 10:00截止"
    )
    assert "1. 运河步道增设公厕\n2. 运河步道增设公厕" in body["text"]
    room = world.rooms["V1"]
    assert body["buttons"] == [
        ["参与投票", f"pv:{poll.id}:0"],
        ["取消关注本议事室", f"fr:{room}:0"],
    ]
    assert body["url"] == "http://127.0.0.1:8080/r/V1"
    assert re.fullmatch(
        rf"http://127\.0\.0\.1:8080/unfollow/r/{room}/{fan}\?exp=\d+&sig=[0-9a-f]{{64}}",
        body["unfollow_url"],
    )

    # Its buttons work from the chat: the ballot, and unfollowing the room.
    resident = Person(services, "-:resident")
    resident.last = [Reply(body["text"], as_buttons(map(tuple, body["buttons"])))]
    await resident.press("参与投票")
    assert "每人一票" in resident.text() and len(resident.labels()) == 2
    resident.last = [Reply(body["text"], as_buttons(map(tuple, body["buttons"])))]
    await resident.press("取消关注本议事室")
    async with services.sessions() as session:
        follows = await session.exec(select(Follow).where(Follow.person_id == fan))
        assert [f.ended_at is not None for f in follows] == [True]
