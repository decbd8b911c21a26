"""Screening polls (网络投票, Yancheng norms §13): the convener puts several publicized
topics of a room to the vote until a closing time; one vote per person; no live results
(CONSUL's rule: results shown while voting shape the vote), so ``results`` refuses until
the poll has closed. Opening tells the room's followers, closing is the reminder sweep's
(notices/poll_pushes.py: ``close_due`` sets ``closed_at`` with a conditional update, and
the voters are told the result once, through a push job).

A vote and the closing are serialized on the poll's row: ``vote`` first claims the row
with a conditional ``UPDATE`` (still open?), so a vote either lands before the closing
(and is counted) or is refused after it, never counted in neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Room, Topic
from storage.participation import Poll, PollOption, PollVote
from storage.sql import insert_for
from workflow.clock import CHINA
from workflow.engine import Lifecycle
from workflow.errors import InvalidField, NotPermitted, WrongState
from workflow.lifecycle import PUBLIC_STATES
from workflow.participation import storable
from workflow.permissions import Actor, may_run_poll
from workflow.texts import text

MIN_OPTIONS, MAX_OPTIONS = 2, 10
#: A poll runs at least an hour and at most this long.
MIN_RUN, MAX_RUN = timedelta(hours=1), timedelta(days=30)
TITLE_MAX = Poll.__table__.c.title.type.length  # type: ignore[attr-defined]


def when(moment: datetime) -> str:
    local = moment.astimezone(CHINA)
    return text("participation", "when", month=local.month, day=local.day, time=f"{local:%H:%M}")


def is_open(poll: Poll, now: datetime) -> bool:
    return poll.closed_at is None and now < poll.closes_at


async def create_poll(
    session: AsyncSession,
    actor: Actor,
    room: Room,
    title: str,
    topic_ids: Sequence[int],
    closes_at: datetime,
    now: datetime,
    *,
    lifecycle: Lifecycle | None = None,
) -> Poll:
    """The room's convener puts ``topic_ids`` (public topics of ``room``) to the vote; the
    ``lifecycle``'s poll listeners hear of it in this transaction (the room's followers are
    told)."""
    assert room.id is not None
    if not may_run_poll(actor, room.id):
        raise NotPermitted("poll_not_permitted")
    chosen = list(dict.fromkeys(topic_ids))
    if not MIN_OPTIONS <= len(chosen) <= MAX_OPTIONS:
        raise InvalidField("poll_options", low=MIN_OPTIONS, high=MAX_OPTIONS)
    found = await session.exec(
        select(Topic.id).where(
            col(Topic.id).in_(chosen),
            Topic.room_id == room.id,
            col(Topic.state).in_(sorted(PUBLIC_STATES)),
        )
    )
    if set(found.all()) != set(chosen):
        raise InvalidField("poll_topics")
    if not now + MIN_RUN <= closes_at <= now + MAX_RUN:
        raise InvalidField("poll_closes", days=MAX_RUN.days)
    name = storable(title).strip()[:TITLE_MAX] or text("participation", "poll_title")
    poll = Poll(
        room_id=room.id,
        title=name,
        created_by_id=actor.person_id,
        created_at=now,
        closes_at=closes_at,
    )
    session.add(poll)
    await session.flush()
    assert poll.id is not None
    for topic_id in chosen:
        session.add(PollOption(poll_id=poll.id, topic_id=topic_id))
    await session.flush()
    if lifecycle is not None:
        await lifecycle.poll_opened(session, poll)
    return poll


@dataclass(frozen=True)
class Option:
    id: int
    topic_id: int
    title: str


async def options(session: AsyncSession, poll_id: int) -> list[Option]:
    rows = await session.exec(
        select(PollOption.id, PollOption.topic_id, Topic.title)
        .join(Topic, col(Topic.id) == col(PollOption.topic_id))
        .where(PollOption.poll_id == poll_id)
        .order_by(col(PollOption.id))
    )
    return [Option(oid, tid, title) for oid, tid, title in rows if oid is not None]


async def my_vote(session: AsyncSession, person_id: int, poll_id: int) -> int | None:
    """The option ``person_id`` voted for, or None."""
    found = await session.exec(
        select(PollVote.option_id).where(
            PollVote.poll_id == poll_id, PollVote.person_id == person_id
        )
    )
    return found.first()


async def vote(
    session: AsyncSession, person_id: int, poll_id: int, option_id: int, now: datetime
) -> bool:
    """``person_id`` votes for ``option_id``; True if this was their vote, False if they had
    already voted for it (a double tap). Another option after voting, or any vote once the
    poll has closed, is refused and changes nothing."""
    poll = await session.get(Poll, poll_id)
    if poll is None:
        raise InvalidField("unknown_poll")
    claim = (
        update(Poll)
        .where(col(Poll.id) == poll_id, col(Poll.closed_at).is_(None), col(Poll.closes_at) > now)
        .values(closes_at=col(Poll.closes_at))
    )
    if not (await session.exec(claim)).rowcount:
        raise WrongState("poll_closed", when=when(poll.closes_at))
    option = await session.get(PollOption, option_id)
    if option is None or option.poll_id != poll_id:
        raise InvalidField("unknown_poll")
    added = await session.exec(
        insert_for(session, PollVote)
        .values(poll_id=poll_id, person_id=person_id, option_id=option_id, at=now)
        .on_conflict_do_nothing(index_elements=["poll_id", "person_id"])
        .returning(col(PollVote.id))
    )
    if added.scalar_one_or_none() is not None:
        return True
    if await my_vote(session, person_id, poll_id) == option_id:
        return False
    raise WrongState("poll_voted")


@dataclass(frozen=True)
class Tally:
    option: Option
    votes: int


async def results(session: AsyncSession, poll: Poll, now: datetime) -> list[Tally]:
    """The votes per option, most first (ties in the order offered); refused while open."""
    if is_open(poll, now):
        raise WrongState("poll_open", when=when(poll.closes_at))
    assert poll.id is not None
    counted = dict(
        (
            await session.exec(
                select(PollVote.option_id, func.count())
                .where(PollVote.poll_id == poll.id)
                .group_by(col(PollVote.option_id))
            )
        ).all()
    )
    tallies = [Tally(o, counted.get(o.id, 0)) for o in await options(session, poll.id)]
    return sorted(tallies, key=lambda t: -t.votes)


async def voters(session: AsyncSession, poll_id: int) -> list[int]:
    found = await session.exec(select(PollVote.person_id).where(PollVote.poll_id == poll_id))
    return sorted(found.all())


async def close_due(session: AsyncSession, now: datetime) -> list[int]:
    """Close every poll whose time is up (a conditional update: each is closed once, by
    one sweeper); the ids it closed."""
    closed = await session.exec(
        update(Poll)
        .where(col(Poll.closed_at).is_(None), col(Poll.closes_at) <= now)
        .values(closed_at=now)
        .returning(col(Poll.id))
    )
    return sorted(closed.scalars().all())


async def open_poll(session: AsyncSession, room_id: int, now: datetime) -> Poll | None:
    """The room's open poll closing soonest, if any."""
    found = await session.exec(
        select(Poll)
        .where(Poll.room_id == room_id, col(Poll.closed_at).is_(None), col(Poll.closes_at) > now)
        .order_by(col(Poll.closes_at))
        .limit(1)
    )
    return found.first()
