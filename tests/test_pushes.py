"""Pushes to many (notices/pushes.py): who is told (followers, likers, suggesters, each
once; the submitter in a text of their own), expanded in small transactions that a restart
in the middle neither repeats nor loses, the unfollow button in every push, and a room's
followers' daily digest. Delivery through the real dispatcher to the fake Bot API."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlmodel import col, select

from notices.message import OutboundMessage
from notices.poll_pushes import push_poll_closed
from notices.pushes import PushExpander, PushWriter
from notices.reminders import Sweeper
from storage.db import SessionFactory, transaction
from storage.models import ChannelIdentity, OutboxMessage, Person, Topic
from storage.participation import Follow, Like, Poll, PollOption, PollVote, Suggestion
from storage.pushes import PushJob
from tests.world import World, build_world
from workflow.clock import CHINA, FixedClock
from workflow.lifecycle import State
from workflow.payloads import FOLLOW_ROOM, FOLLOW_TOPIC, Setting
from workflow.unfollow_links import UnfollowLinks
from workflow.workdays import WorkdayCalendar

CALENDAR = WorkdayCalendar.load()


@pytest.fixture
async def world(sessions: SessionFactory, clock: FixedClock) -> World:
    world = await build_world(sessions, clock, CALENDAR)
    world.lifecycle.listeners.append(PushWriter(clock, "https://mashangyi.test"))
    return world


async def residents(world: World, count: int, channel: str = "telegram") -> list[int]:
    """``count`` new people, each with a chat on ``channel`` (address = 9000 + n)."""
    ids = []
    async with transaction(world.sessions) as session:
        for _ in range(count):
            person = Person(display_name="居民")
            session.add(person)
            await session.flush()
            assert person.id is not None
            session.add(
                ChannelIdentity(
                    person_id=person.id, channel=channel, external_id=str(9000 + person.id)
                )
            )
            ids.append(person.id)
    return ids


async def follow(world: World, person: int, *, topic: Topic | None = None, room: str = "") -> None:
    async with transaction(world.sessions) as session:
        session.add(
            Follow(
                person_id=person,
                topic_id=topic.id if topic else None,
                room_id=world.rooms[room] if room else None,
                created_at=world.clock.now(),
            )
        )


async def like(world: World, person: int, topic: Topic, *, active: bool = True) -> None:
    now = world.clock.now()
    async with transaction(world.sessions) as session:
        session.add(
            Like(person_id=person, topic_id=topic.id, active=active, created_at=now, updated_at=now)
        )


async def suggest(world: World, person: int, topic: Topic, n: int = 1) -> None:
    async with transaction(world.sessions) as session:
        session.add(
            Suggestion(
                key=f"s:{person}:{topic.id}:{n}",
                topic_id=topic.id,
                person_id=person,
                body="建议在两端各建一座",
                created_at=world.clock.now(),
            )
        )


async def rows(sessions: SessionFactory, kind_prefix: str = "") -> list[OutboxMessage]:
    async with sessions() as session:
        found = await session.exec(
            select(OutboxMessage)
            .where(col(OutboxMessage.kind).startswith(kind_prefix))
            .order_by(col(OutboxMessage.id))
        )
        return list(found.all())


async def test_everyone_concerned_is_told_once_and_the_submitter_in_a_text_of_their_own(
    world: World,
) -> None:
    topic = await world.at(State.APPROVED)
    fan, liker, suggester, quitter, lukewarm, silent = await residents(world, 6)
    submitter = world.person("-", "resident")
    convener = world.person("V1", "convener")
    await follow(world, fan, topic=topic)
    await like(world, fan, topic)  # a follower who also likes: still one message
    await suggest(world, fan, topic)
    await like(world, liker, topic)
    await suggest(world, suggester, topic, 1)
    await suggest(world, suggester, topic, 2)
    await follow(world, submitter, topic=topic)  # told as the submitter, not again
    await follow(world, convener, topic=topic)  # publishes it: not told of their own act
    await like(world, lukewarm, topic, active=False)  # took the like back
    await like(world, quitter, topic)
    async with transaction(world.sessions) as session:  # then unfollowed: an opt-out
        session.add(
            Follow(
                person_id=quitter,
                topic_id=topic.id,
                created_at=world.clock.now(),
                ended_at=world.clock.now(),
            )
        )
    before = {r.id for r in await rows(world.sessions)}

    await world.walk(topic, ["publish"])
    # Recorded with the change, not yet expanded: one job, no push rows.
    async with world.sessions() as session:
        jobs = (await session.exec(select(PushJob))).all()
    assert [(j.kind, j.subject_id, j.done_at) for j in jobs] == [
        ("push.topic.publicized", topic.id, None)
    ]
    assert await rows(world.sessions, "push.") == []

    written = await PushExpander(world.sessions, world.clock, chunk=2).run_once()
    pushed = await rows(world.sessions, "push.")
    assert written == 3
    assert sorted(r.person_id for r in pushed) == sorted([fan, liker, suggester])
    assert silent not in {r.person_id for r in pushed}
    for row in pushed:
        message = OutboundMessage.from_json(row.body)
        assert row.idempotency_key.startswith("push:")
        assert row.idempotency_key.endswith(f":{row.person_id}")
        assert "已在“码上建议”公示" in message.text
        assert message.url == f"https://mashangyi.test/t/{topic.number}"
        assert [b.payload for b in message.buttons] == [
            FOLLOW_TOPIC.build(Setting(topic.id, False))
        ]
        assert [b.label for b in message.buttons] == ["取消关注"]
    new = [r for r in await rows(world.sessions) if r.id not in before]
    told = Counter(r.person_id for r in new if r.kind == "topic.publicized")
    assert told == {submitter: 1}
    assert Counter(r.person_id for r in new)[submitter] == 1
    async with world.sessions() as session:
        job = (await session.exec(select(PushJob))).one()
    assert job.done_at is not None and job.expanded == 3


class Crash(Exception):
    """The process dies at this commit: the transaction never commits."""


def crashing(sessions: SessionFactory, at_commit: int) -> SessionFactory:
    """``sessions`` whose ``at_commit``-th commit fails, after its statements ran."""
    commits = 0

    def before_commit(_session: object) -> None:
        nonlocal commits
        commits += 1
        if commits == at_commit:
            raise Crash()

    def factory() -> object:
        session = sessions()
        event.listen(session.sync_session, "before_commit", before_commit)
        return session

    return factory  # type: ignore[return-value]


async def published_to(world: World, count: int) -> tuple[Topic, list[int]]:
    topic = await world.at(State.APPROVED)
    people = await residents(world, count)
    async with transaction(world.sessions) as session:
        for n, person in enumerate(people):
            session.add(Follow(person_id=person, topic_id=topic.id, created_at=world.clock.now()))
            if n % 3 == 0:  # some of them like it too: still one message each
                now = world.clock.now()
                session.add(
                    Like(person_id=person, topic_id=topic.id, created_at=now, updated_at=now)
                )
    await world.walk(topic, ["publish"])
    return topic, people


async def test_a_crash_in_the_middle_of_a_push_neither_repeats_nor_loses_a_message(
    world: World,
) -> None:
    _, people = await published_to(world, 23)
    dying = PushExpander(crashing(world.sessions, at_commit=3), world.clock, chunk=5)
    with pytest.raises(Crash):
        await dying.run_once()
    # Two chunks committed, the third rolled back with the process.
    assert len(await rows(world.sessions, "push.")) == 10
    await PushExpander(world.sessions, world.clock, chunk=5).run_once()
    pushed = await rows(world.sessions, "push.")
    assert Counter(r.person_id for r in pushed) == Counter(people)

    # The job read again from the start (a cursor lost, a second worker): nothing new.
    async with transaction(world.sessions) as session:
        job = (await session.exec(select(PushJob))).one()
        job.cursor, job.done_at = 0, None
        session.add(job)
    await PushExpander(world.sessions, world.clock, chunk=5).run_once()
    again = await rows(world.sessions, "push.")
    assert [r.id for r in again] == [r.id for r in pushed]


async def test_two_expanders_at_once_write_each_message_once(world: World) -> None:
    _, people = await published_to(world, 40)
    first = PushExpander(world.sessions, world.clock, chunk=4)
    second = PushExpander(world.sessions, world.clock, chunk=4)
    await asyncio.gather(first.run_once(), second.run_once())
    pushed = await rows(world.sessions, "push.")
    assert Counter(r.person_id for r in pushed) == Counter(people)


async def test_a_closed_poll_is_told_to_its_voters_once(world: World) -> None:
    topic = await world.at(State.APPROVED)
    voters = await residents(world, 3)
    async with transaction(world.sessions) as session:
        poll = Poll(
            room_id=world.rooms["V1"],
            title="先议哪件事",
            created_at=world.clock.now(),
            closes_at=world.clock.now(),
        )
        session.add(poll)
        await session.flush()
        option = PollOption(poll_id=poll.id, topic_id=topic.id)
        session.add(option)
        await session.flush()
        for voter in voters:
            session.add(
                PollVote(
                    poll_id=poll.id, person_id=voter, option_id=option.id, at=world.clock.now()
                )
            )
        assert poll.id is not None
    for _ in range(2):  # the closing replayed: one push
        async with transaction(world.sessions) as session:
            await push_poll_closed(session, poll, "投票结果：公厕 3 票", world.clock.now())
    await PushExpander(world.sessions, world.clock).run_once()
    pushed = await rows(world.sessions, "push.poll")
    assert sorted(r.person_id for r in pushed) == voters
    assert {OutboundMessage.from_json(r.body).text for r in pushed} == {"投票结果：公厕 3 票"}


async def test_room_followers_get_one_digest_a_day_with_an_unfollow_button(
    world: World, sessions: SessionFactory, clock: FixedClock
) -> None:
    fans = await residents(world, 2)
    for fan in fans:
        await follow(world, fan, room="V1")
    other_fan = (await residents(world, 1))[0]
    await follow(world, other_fan, room="V3")  # nothing happened there
    first = await world.at(State.PUBLICIZED)
    second = await world.at(State.RESULTS_PUBLISHED)

    def sweeper() -> Sweeper:
        return Sweeper(
            sessions,
            clock,
            CALENDAR,
            public_base_url="https://mashangyi.test",
            unfollow_links=UnfollowLinks(b"test-key", "https://mashangyi.test"),
        )

    # The same day: nothing yet (today's events go into tomorrow's digest).
    await sweeper().run_once()
    assert await rows(sessions, "reminder.room.digest") == []
    clock.advance(timedelta(days=1))  # Tuesday 10:00
    for _ in range(2):  # two sweeps (or two processes): one digest each
        await asyncio.gather(sweeper().run_once(), sweeper().run_once())
    digests = await rows(sessions, "reminder.room.digest")
    assert sorted(r.person_id for r in digests) == fans
    message = OutboundMessage.from_json(digests[0].body)
    assert first.number in message.text and second.number in message.text
    assert "协商结果已公示" in message.text
    assert [b.payload for b in message.buttons] == [
        FOLLOW_ROOM.build(Setting(world.rooms["V1"], False))
    ]
    # WeChat's template fallback cannot carry the button: the row has the signed link.
    for row in digests:
        link = OutboundMessage.from_json(row.body).unfollow_url
        assert f"/unfollow/r/{world.rooms['V1']}/{row.person_id}?exp=" in link
    clock.advance(timedelta(days=1))  # Wednesday: nothing new happened, nothing sent
    await sweeper().run_once()
    assert len(await rows(sessions, "reminder.room.digest")) == 2
    assert now_china(clock).weekday() == 2


def now_china(clock: FixedClock) -> object:
    return clock.now().astimezone(CHINA)
