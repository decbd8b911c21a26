"""Pushes to many (notices/pushes.py): who is told (followers, likers, suggesters, each
once; the submitter in a text of their own), expanded in small transactions that a restart
in the middle neither repeats nor loses, the unfollow button in every push, and a room's
followers' daily digest. Delivery through the real dispatcher to the fake Bot API."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from notices.message import OutboundMessage
from notices.pushes import PushExpander, PushWriter, push_poll_closed
from notices.reminders import Sweeper
from storage.db import SessionFactory, transaction
from storage.models import ChannelIdentity, OutboxMessage, Person, Topic
from storage.participation import Follow, Like, Poll, PollOption, PollVote, Suggestion
from storage.pushes import PushJob
from tests.world import World, build_world
from workflow.clock import CHINA, FixedClock
from workflow.lifecycle import State
from workflow.payloads import FOLLOW_ROOM, FOLLOW_TOPIC, FollowChoice
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
            FOLLOW_TOPIC.build(FollowChoice(topic.id, False))
        ]
        assert [b.label for b in message.buttons] == ["取消关注"]
    new = [r for r in await rows(world.sessions) if r.id not in before]
    told = Counter(r.person_id for r in new if r.kind == "topic.publicized")
    assert told == {submitter: 1}
    assert Counter(r.person_id for r in new)[submitter] == 1
    async with world.sessions() as session:
        job = (await session.exec(select(PushJob))).one()
    assert job.done_at is not None and job.expanded == 3
