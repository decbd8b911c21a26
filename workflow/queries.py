"""Read-side queries for the operators' command line (bot/cli/ formats what they return)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import OutboxMessage, Person, Room, Topic, TopicEvent
from workflow.lifecycle import State
from workflow.overdue import OverdueItem, list_overdue
from workflow.satisfaction import Round, rounds
from workflow.workdays import WorkdayCalendar

_Row = TypeVar("_Row", Room, Person)
NAMES_CHUNK = 500  # ids per IN list (SQLite's old bound parameter limit is 999)


async def names(
    session: AsyncSession, model: type[_Row], ids: Iterable[int | None]
) -> dict[int | None, _Row]:
    """The rows of ``model`` with these ids: only what a listing shows, not the table."""
    wanted = sorted({i for i in ids if i is not None})
    found: dict[int | None, _Row] = {}
    for start in range(0, len(wanted), NAMES_CHUNK):
        chunk = wanted[start : start + NAMES_CHUNK]
        rows = await session.exec(select(model).where(col(model.id).in_(chunk)))
        found |= {row.id: row for row in rows}
    return found


async def all_rooms(session: AsyncSession) -> Sequence[Room]:
    """Every room, by code."""
    return (await session.exec(select(Room).order_by(Room.code))).all()


@dataclass(frozen=True)
class TopicPage:
    topics: Sequence[Topic]
    #: All topics matching, on every page.
    total: int
    #: The rooms of the topics on this page.
    rooms: dict[int | None, Room]


async def topic_page(
    session: AsyncSession,
    *,
    room_id: int | None = None,
    state: State | None = None,
    offset: int,
    limit: int,
) -> TopicPage:
    """Topics by number, ``limit`` of them after ``offset``; only one room's or one state's
    when given."""
    query = select(Topic)
    if room_id is not None:
        query = query.where(Topic.room_id == room_id)
    if state is not None:
        query = query.where(Topic.state == state)
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    page = query.order_by(Topic.number).offset(offset).limit(limit)
    topics = (await session.exec(page)).all()
    rooms = await names(session, Room, (t.room_id for t in topics))
    return TopicPage(topics, total, rooms)


@dataclass(frozen=True)
class TopicRecord:
    """A topic with its whole history and every message about it."""

    topic: Topic
    events: Sequence[TopicEvent]
    outbox: Sequence[OutboxMessage]
    #: The rooms and people the topic, its events and its messages name.
    rooms: dict[int | None, Room]
    people: dict[int | None, Person]
    #: 问题解决了吗？ — the answers, one round per implementation.
    satisfaction: Sequence[Round] = ()


async def topic_record(session: AsyncSession, number: str) -> TopicRecord | None:
    """The topic numbered ``number``, None when there is none."""
    topic = (await session.exec(select(Topic).where(Topic.number == number))).first()
    if topic is None:
        return None
    events = (
        await session.exec(
            select(TopicEvent).where(TopicEvent.topic_id == topic.id).order_by(col(TopicEvent.seq))
        )
    ).all()
    outbox = (
        await session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.topic_id == topic.id)
            .order_by(col(OutboxMessage.id))
        )
    ).all()
    rooms = await names(
        session,
        Room,
        [topic.room_id, *(r for e in events for r in (e.room_id, e.from_room_id))],
    )
    assert topic.id is not None
    answered = await rounds(session, topic.id)
    people = await names(
        session,
        Person,
        [
            topic.submitter_id,
            *(e.actor_id for e in events),
            *(m.person_id for m in outbox),
            *(a.person_id for r in answered for a in r.answers),
        ],
    )
    return TopicRecord(topic, events, outbox, rooms, people, answered)


@dataclass(frozen=True)
class OverdueReport:
    items: Sequence[OverdueItem]
    #: The people responsible for them.
    people: dict[int | None, Person]


async def overdue_report(
    session: AsyncSession,
    now: datetime,
    calendar: WorkdayCalendar,
    *,
    escalate_after_days: int,
    under: int | None = None,
) -> OverdueReport:
    """Every overdue step (``list_overdue``) with the people who may act on it."""
    items = await list_overdue(
        session, now, calendar, escalate_after_days=escalate_after_days, under=under
    )
    people = await names(session, Person, (pid for i in items for pid, _ in i.responsible))
    return OverdueReport(items, people)
