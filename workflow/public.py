"""Read-side queries of the public pages (码上建议, 码上查情, a topic's and a room's page).

Only what the public may see ever leaves here: a topic's title, background, room, state,
the dates of its public steps and the details of a few of them (meeting time and place,
progress notes, the agreed outcome once results are published), approved photos, visible
suggestions (their text only, never who wrote them), counts. Never the submitter, a phone,
a location, a person's name, a held or hidden suggestion.

Every query is bounded, so a page costs the same with a hundred topics or a million: lists
walk ``ix_topics_published`` / ``ix_topics_room_published`` (``ix_topics_results_published``)
newest first with a keyset cursor, a page at a time; a search looks at the next
``SEARCH_WINDOW`` topics of the scope only and says where to go on from; a topic page reads
one topic and at most ``SUGGESTIONS_SHOWN`` suggestions.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import select_columns
from storage.models import Attachment, Room, Topic, TopicEvent
from storage.participation import Follow, Like, Poll, PollOption, PollVote, Suggestion
from workflow.lifecycle import PUBLIC_STATES, RESULT_STATES

PAGE_SIZE = 20
#: A search reads at most this many topics of the scope per request (newest first).
SEARCH_WINDOW = 2000
SEARCH_WORDS = 5
SUGGESTIONS_SHOWN = 50
EXCERPT = 90
#: The steps of a topic the public is shown, in the order they happen; ``details``: the
#: fields of the step shown with it (everything else a step records stays internal).
TIMELINE: dict[str, tuple[str, ...]] = {
    "submit": (),
    "screen_accept": (),
    "approve": (),
    "publish": (),
    "schedule_meeting": ("time", "place"),
    "record_meeting": (),
    "approve_outcome": (),
    "publish_results": (),
    "record_progress": ("note",),
    "request_reply": ("department", "reply_due"),
    "record_reply": ("reply",),
    "complete": ("summary",),
    "reopen": (),
}
RESULTS_STATES = RESULT_STATES
_PUBLIC = sorted(PUBLIC_STATES)


@dataclass(frozen=True)
class Cursor:
    """Where a list page ends: the (time, id) of its last row, newest first."""

    at: datetime
    id: int

    def encode(self) -> str:
        return f"{int(self.at.timestamp() * 1_000_000)}-{self.id}"

    @classmethod
    def decode(cls, text: str) -> Cursor | None:
        stamp, _, ident = text.partition("-")
        if not (stamp.isdigit() and ident.isdigit()) or len(text) > 40:
            return None
        try:
            at = datetime.fromtimestamp(int(stamp) / 1_000_000, UTC)
        except (OverflowError, ValueError, OSError):
            return None
        return cls(at, int(ident))


@dataclass(frozen=True)
class Row:
    """One topic in a list."""

    number: str
    title: str
    excerpt: str
    room_id: int
    state: str
    published_at: datetime
    results_published_at: datetime | None
    likes: int = 0
    suggestions: int = 0
    #: Results lists: the agreed outcome (implementer, measures, due) and the latest
    #: progress note, if any.
    outcome: dict[str, Any] | None = None
    progress: str = ""


@dataclass(frozen=True)
class Listing:
    rows: list[Row]
    #: The next page (None: this is the last).
    next: Cursor | None
    #: A search that looked at a whole window without filling the page: where to go on.
    searched_to: Cursor | None = None


def words_of(query: str) -> list[str]:
    """The words of a search box (blank-separated), at most ``SEARCH_WORDS``, each ≤ 20."""
    return [w[:20] for w in query.split()][:SEARCH_WORDS]


def _like(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def public_topics(
    session: AsyncSession,
    room_ids: Collection[int] | None,
    *,
    results: bool = False,
    words: Sequence[str] = (),
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> Listing:
    """Publicized topics (``results``: those whose results are published) of the rooms
    ``room_ids`` (None: everywhere), newest first, ``limit`` after ``after``; with
    ``words``, those whose title or background holds every word."""
    stamp = col(Topic.results_published_at) if results else col(Topic.published_at)
    ident = col(Topic.id)
    conditions: list[Any] = [stamp.is_not(None), col(Topic.state).in_(_PUBLIC)]
    if room_ids is not None:
        conditions.append(col(Topic.room_id).in_(sorted(room_ids)))
    if after is not None:
        conditions.append(or_(stamp < after.at, and_(stamp == after.at, ident < after.id)))
    order = (stamp.desc(), ident.desc())
    columns = (
        Topic.id,
        Topic.number,
        Topic.title,
        func.substr(Topic.background, 1, EXCERPT + 1),
        Topic.room_id,
        Topic.state,
        Topic.published_at,
        Topic.results_published_at,
        Topic.facts,
    )
    searched_to: Cursor | None = None
    if words:
        # The window first (an index range, bounded), then the words within it.
        window = (
            select(ident.label("id"), stamp.label("at"))
            .where(*conditions)
            .order_by(*order)
            .limit(SEARCH_WINDOW)
            .subquery()
        )
        matches = [
            or_(col(Topic.title).like(_like(w), escape="\\"),
                col(Topic.background).like(_like(w), escape="\\"))
            for w in words
        ]  # fmt: skip
        query = (
            select_columns(*columns)
            .join(window, window.c.id == ident)
            .where(*matches)
            .order_by(*order)
            .limit(limit + 1)
        )
        rows = list((await session.exec(query)).all())
        if len(rows) <= limit:
            last = (
                await session.exec(
                    select(window.c.id, window.c.at)
                    .order_by(window.c.at.desc(), window.c.id.desc())
                    .offset(SEARCH_WINDOW - 1)
                    .limit(1)
                )
            ).first()
            if last is not None:
                searched_to = Cursor(last[1], last[0])
    else:
        query = select_columns(*columns).where(*conditions).order_by(*order).limit(limit + 1)
        rows = list((await session.exec(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [r[0] for r in rows]
    likes, suggestions = await _counts(session, ids)
    progress = await _latest_progress(session, ids) if results else {}
    listed = [
        Row(
            number=r[1],
            title=r[2],
            excerpt=r[3] if len(r[3]) <= EXCERPT else r[3][:EXCERPT] + "…",
            room_id=r[4],
            state=r[5],
            published_at=r[6],
            results_published_at=r[7],
            likes=likes.get(r[0], 0),
            suggestions=suggestions.get(r[0], 0),
            outcome=_outcome(r[8]) if results else None,
            progress=progress.get(r[0], ""),
        )
        for r in rows
    ]
    last_row = rows[-1] if rows else None
    next_cursor = None
    if more and last_row is not None:
        next_cursor = Cursor(last_row[7] if results else last_row[6], last_row[0])
    return Listing(listed, next_cursor, searched_to)


def _outcome(facts: Any) -> dict[str, Any] | None:
    outcome = facts.get("approve_outcome") if isinstance(facts, dict) else None
    return outcome if isinstance(outcome, dict) else None


async def _latest_progress(session: AsyncSession, topic_ids: list[int]) -> dict[int, str]:
    """The newest progress note of each of a page of topics (at most a few per topic)."""
    if not topic_ids:
        return {}
    found = await session.exec(
        select_columns(TopicEvent.topic_id, TopicEvent.fields)
        .where(col(TopicEvent.topic_id).in_(topic_ids), TopicEvent.action == "record_progress")
        .order_by(col(TopicEvent.topic_id), col(TopicEvent.seq))
        .limit(50 * len(topic_ids))
    )
    return {topic_id: str(fields.get("note", "")) for topic_id, fields in found}


async def _counts(
    session: AsyncSession, topic_ids: list[int]
) -> tuple[dict[int, int], dict[int, int]]:
    """Active likes and visible suggestions of a page of topics (two grouped queries)."""
    if not topic_ids:
        return {}, {}
    likes = await session.exec(
        select_columns(Like.topic_id, func.count())
        .where(col(Like.topic_id).in_(topic_ids), col(Like.active).is_(True))
        .group_by(col(Like.topic_id))
    )
    suggestions = await session.exec(
        select_columns(Suggestion.topic_id, func.count())
        .where(col(Suggestion.topic_id).in_(topic_ids), Suggestion.status == "visible")
        .group_by(col(Suggestion.topic_id))
    )
    return dict(likes.all()), dict(suggestions.all())


# -- one topic --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    action: str
    at: datetime
    details: dict[str, Any]


@dataclass(frozen=True)
class PollView:
    title: str
    closes_at: datetime
    closed: bool
    #: (topic number, title, votes or None while open), in the poll's order.
    options: list[tuple[str, str, int | None]]


@dataclass
class PublicTopic:
    topic: Topic
    room: Room
    steps: list[Step]
    photos: list[Attachment]
    suggestions: list[Suggestion]
    suggestion_count: int
    likes: int
    follows: int
    poll: PollView | None = None
    #: The agreed outcome (implementer, measures, due) once results are published.
    outcome: dict[str, Any] | None = None
    progress: list[Step] = field(default_factory=list)


async def find_public_topic(session: AsyncSession, number: str) -> Topic | None:
    """The topic numbered ``number`` if it is public (else None, as for no such number)."""
    if len(number) > 60:
        return None
    topic = (await session.exec(select(Topic).where(Topic.number == number))).first()
    if topic is None or topic.state not in PUBLIC_STATES or topic.published_at is None:
        return None
    return topic


def approved_photo_ids(topic: Topic) -> list[int]:
    """The attachments the convener allowed to be shown when publishing (``publish`` step's
    ``photos``); anything else in that field is ignored."""
    publish = topic.facts.get("publish")
    photos = publish.get("photos") if isinstance(publish, dict) else None
    if not isinstance(photos, list):
        return []
    return [p for p in photos if isinstance(p, int) and not isinstance(p, bool)][:20]


async def approved_photo(
    session: AsyncSession, topic: Topic, attachment_id: int
) -> Attachment | None:
    """The attachment if it is one of ``topic``'s approved, stored images."""
    if attachment_id not in approved_photo_ids(topic):
        return None
    attachment = await session.get(Attachment, attachment_id)
    if (
        attachment is None
        or attachment.topic_id != topic.id
        or attachment.status != "stored"
        or attachment.kind != "image"
    ):
        return None
    return attachment


async def public_topic(session: AsyncSession, topic: Topic, now: datetime) -> PublicTopic:
    """Everything a public topic's page shows."""
    assert topic.id is not None
    room = await session.get(Room, topic.room_id)
    assert room is not None
    events = await session.exec(
        select(TopicEvent)
        .where(TopicEvent.topic_id == topic.id, col(TopicEvent.action).in_(list(TIMELINE)))
        .order_by(col(TopicEvent.seq))
        .limit(200)
    )
    steps = [
        Step(e.action, e.at, {k: e.fields[k] for k in TIMELINE[e.action] if e.fields.get(k)})
        for e in events
    ]
    photo_ids = approved_photo_ids(topic)
    photos: list[Attachment] = []
    if photo_ids:
        found = await session.exec(
            select(Attachment)
            .where(
                col(Attachment.id).in_(photo_ids),
                Attachment.topic_id == topic.id,
                Attachment.status == "stored",
                Attachment.kind == "image",
            )
            .order_by(col(Attachment.id))
        )
        photos = list(found.all())
    suggestions = (
        await session.exec(
            select(Suggestion)
            .where(Suggestion.topic_id == topic.id, Suggestion.status == "visible")
            .order_by(col(Suggestion.id).desc())
            .limit(SUGGESTIONS_SHOWN)
        )
    ).all()
    # The three counts in one round trip (each an index range of its own table).
    suggestion_count, likes, follows = (
        await session.exec(
            select_columns(
                select(func.count())
                .select_from(Suggestion)
                .where(Suggestion.topic_id == topic.id, Suggestion.status == "visible")
                .scalar_subquery(),
                select(func.count())
                .select_from(Like)
                .where(Like.topic_id == topic.id, col(Like.active).is_(True))
                .scalar_subquery(),
                select(func.count())
                .select_from(Follow)
                .where(Follow.topic_id == topic.id, col(Follow.ended_at).is_(None))
                .scalar_subquery(),
            )
        )
    ).one()
    published = topic.state in RESULTS_STATES and topic.results_published_at is not None
    outcome = topic.facts.get("approve_outcome") if published else None
    return PublicTopic(
        topic=topic,
        room=room,
        steps=steps,
        photos=photos,
        suggestions=list(suggestions),
        suggestion_count=suggestion_count,
        likes=likes,
        follows=follows,
        poll=await _poll(session, topic.room_id, topic.id, now),
        outcome=outcome if isinstance(outcome, dict) else None,
        progress=[s for s in steps if s.action == "record_progress"],
    )


async def _poll(
    session: AsyncSession, room_id: int, topic_id: int, now: datetime
) -> PollView | None:
    """The newest poll this topic is a candidate in; votes only once it has closed (no live
    results: they would shape the vote)."""
    # Through the room's polls (ix_polls_room_id, then each poll's options by their unique
    # key): poll_options has no index by topic alone, and a scan of it would grow with
    # every poll ever held. A poll's candidates are topics of its room.
    poll = (
        await session.exec(
            select(Poll)
            .join(PollOption, col(PollOption.poll_id) == col(Poll.id))
            .where(Poll.room_id == room_id, PollOption.topic_id == topic_id)
            .order_by(col(Poll.closes_at).desc())
            .limit(1)
        )
    ).first()
    if poll is None:
        return None
    closed = poll.closed_at is not None or poll.closes_at <= now
    options = (
        await session.exec(
            select_columns(PollOption.id, Topic.number, Topic.title, Topic.state)
            .join(Topic, col(Topic.id) == col(PollOption.topic_id))
            .where(PollOption.poll_id == poll.id)
            .order_by(col(PollOption.id))
            .limit(50)
        )
    ).all()
    votes: dict[int, int] = {}
    if closed:
        counted = await session.exec(
            select_columns(PollVote.option_id, func.count())
            .where(PollVote.poll_id == poll.id)
            .group_by(col(PollVote.option_id))
        )
        votes = dict(counted.all())
    return PollView(
        title=poll.title,
        closes_at=poll.closes_at,
        closed=closed,
        # A candidate that is not public (yet) is shown without its number: no link to it.
        options=[
            (number if state in PUBLIC_STATES else "", title, votes.get(oid, 0) if closed else None)
            for oid, number, title, state in options
        ],
    )
