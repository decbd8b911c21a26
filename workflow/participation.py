"""The public's part on a publicized topic: likes (点赞), follows (关注), suggestions
(跟帖建议), their reports (举报) and their moderation.

Each use case is one function, run in the caller's transaction. Each is a SET, not a
toggle, and rests on the tables' unique keys (``storage.participation``) through
``INSERT … ON CONFLICT`` and conditional ``UPDATE``s rather than read-then-write: a
retried message, a double tap or two people at once leave one row and the same answer.
A refusal is a ``workflow.errors`` type with a Chinese message. Nothing is deleted:
moderation changes a suggestion's ``status`` and every moderation action is an audit row.

Near 500 lines on purpose: every use case of the public's part on a topic with the small
read functions that answer for them (counts, what a person has done, the lists), one
module the chat, the pages and the pushes all build on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Room, Topic
from storage.participation import Follow, Like, Suggestion, SuggestionReport
from storage.sql import insert_for
from workflow import audit
from workflow.clock import CHINA
from workflow.errors import InvalidField, MissingField, NotPermitted, WrongState
from workflow.lifecycle import FINAL_STATES, PUBLIC_STATES, State
from workflow.permissions import Actor, may_moderate
from workflow.texts import label, text

#: Suggestions up to this many characters (the issue's limit).
SUGGESTION_MAX = 500
#: Distinct reports that hide a suggestion pending the convener (Decidim's default).
REPORTS_TO_HIDE = 3
REASON_MAX = Suggestion.__table__.c.moderation_reason.type.length  # type: ignore[attr-defined]
MATCHED_MAX = Suggestion.__table__.c.matched.type.length  # type: ignore[attr-defined]

#: What PostgreSQL refuses in text: NUL and lone surrogates (as dialogs.types.storable;
#: the web pages reach this module without going through dialogs).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Status(StrEnum):
    VISIBLE = "visible"
    HELD = "held"  # matched the sensitive-word list: waits for the convener
    HIDDEN = "hidden"  # by the convener, or by reports (``hidden_by_reports``)


def storable(value: str) -> str:
    """``value`` without the code points the database cannot store."""
    return _UNSTORABLE.sub("", value)


def _act(key: str) -> str:
    return label("participation", key)


def _require_public(topic: Topic, action: str) -> None:
    if topic.state not in PUBLIC_STATES:
        raise WrongState("wrong_state", state=label("states", topic.state), action=_act(action))


# --- likes and follows ----------------------------------------------------------------


async def set_like(
    session: AsyncSession, person_id: int, topic: Topic, liked: bool, now: datetime
) -> bool:
    """Make ``person_id``'s like of ``topic`` ``liked``; True if that changed anything.

    Refused unless the topic is public (a withdrawn or declined one has no likes)."""
    _require_public(topic, "like" if liked else "unlike")
    statement = (
        insert_for(session, Like)
        .values(
            person_id=person_id, topic_id=topic.id, active=liked, created_at=now, updated_at=now
        )
        .on_conflict_do_update(
            index_elements=["person_id", "topic_id"],
            set_={"active": liked, "updated_at": now},
            where=col(Like.active) != liked,
        )
        .returning(col(Like.id))
    )
    return (await session.exec(statement)).scalar_one_or_none() is not None


async def _set_follow(
    session: AsyncSession, person_id: int, subject: str, subject_id: int, on: bool, now: datetime
) -> bool:
    column = col(getattr(Follow, subject))
    if on:
        statement = (
            insert_for(session, Follow)
            .values(person_id=person_id, created_at=now, ended_at=None, **{subject: subject_id})
            .on_conflict_do_update(
                index_elements=["person_id", subject],
                set_={"ended_at": None},
                where=col(Follow.ended_at).is_not(None),
            )
            .returning(col(Follow.id))
        )
        return (await session.exec(statement)).scalar_one_or_none() is not None
    ended = (
        update(Follow)
        .where(col(Follow.person_id) == person_id, column == subject_id)
        .where(col(Follow.ended_at).is_(None))
        .values(ended_at=now)
    )
    return bool((await session.exec(ended)).rowcount)


async def set_follow_topic(
    session: AsyncSession, person_id: int, topic: Topic, following: bool, now: datetime
) -> bool:
    """Follow (or stop following) ``topic``; True if that changed anything.

    Following is refused on a topic that ended without consultation (withdrawn, declined,
    redirected): there is nothing to hear of. An open one may be followed (a resident who
    finds their matter already raised supports it). Unfollowing always works: it is the
    button on every push."""
    if following and topic.state in FINAL_STATES and topic.state not in PUBLIC_STATES:
        raise WrongState("wrong_state", state=label("states", topic.state), action=_act("follow"))
    assert topic.id is not None
    return await _set_follow(session, person_id, "topic_id", topic.id, following, now)


async def set_follow_room(
    session: AsyncSession, person_id: int, room: Room, following: bool, now: datetime
) -> bool:
    """Follow (or stop following) ``room``'s publicized topics and results (a daily digest)."""
    assert room.id is not None
    return await _set_follow(session, person_id, "room_id", room.id, following, now)


# --- suggestions ----------------------------------------------------------------------


def suggestions_close_at(topic: Topic) -> datetime | None:
    """When suggestions on ``topic`` close, from the publish step's ``suggestions_close``
    (a date: open through that day, China time; a time: until then); None: not set."""
    raw = (topic.facts.get("publish") or {}).get("suggestions_close")
    if not raw:
        return None
    try:
        if isinstance(raw, str) and len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day + timedelta(days=1), time(), tzinfo=CHINA)
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        return None  # a fact we did not write: do not close on a guess
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA)


def suggestions_open(topic: Topic, now: datetime) -> bool:
    """Suggestions are taken while the topic is publicized and before they close."""
    closes = suggestions_close_at(topic)
    return topic.state == State.PUBLICIZED and (closes is None or now < closes)


def _fold(value: str) -> str:
    # NFKC: full-width letters and digits (ＡＢＣ, typed by Chinese input methods) match
    # the list's ASCII ones.
    return unicodedata.normalize("NFKC", value).casefold()


def sensitive_match(body: str, words: Iterable[str]) -> str | None:
    """The first word of ``words`` that ``body`` contains (case- and width-insensitively),
    or None."""
    folded = _fold(body)
    return next((w for w in words if w.strip() and _fold(w.strip()) in folded), None)


def clean_suggestion(raw: str) -> str:
    """The storable, trimmed text of a suggestion, refused if empty or too long."""
    body = storable(raw).strip()
    field = _act("suggestion")
    if not body:
        raise MissingField("empty", field=field)
    if len(body) > SUGGESTION_MAX:
        raise InvalidField("too_long", field=field, limit=SUGGESTION_MAX, length=len(body))
    return body


async def suggest(
    session: AsyncSession,
    person_id: int,
    topic: Topic,
    body: str,
    key: str,
    words: Sequence[str],
    now: datetime,
) -> Suggestion:
    """Add ``person_id``'s suggestion on ``topic``: one row per ``key`` (the message that
    brought it), however often it is delivered. Held for the convener when it contains a
    word of ``words`` (the configured sensitive-word list)."""
    if not suggestions_open(topic, now):
        if topic.state == State.PUBLICIZED:
            closes = suggestions_close_at(topic)
            assert closes is not None
            raise WrongState("suggestions_closed", when=_when(closes))
        _require_public(topic, "suggest")
        raise WrongState("suggestions_over", state=label("states", topic.state))
    clean = clean_suggestion(body)
    matched = sensitive_match(clean, words)
    status = Status.HELD if matched else Status.VISIBLE
    statement = (
        insert_for(session, Suggestion)
        .values(
            key=key,
            topic_id=topic.id,
            person_id=person_id,
            body=clean,
            status=status,
            matched=matched[:MATCHED_MAX] if matched else None,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(col(Suggestion.id))
    )
    added = (await session.exec(statement)).scalar_one_or_none()
    row = await _suggestion_by(session, col(Suggestion.key) == key)
    assert row is not None and row.id is not None
    if added is not None and matched:
        await audit.record(
            session,
            "suggestion.hold",
            at=now,
            suggestion_id=row.id,
            topic_id=topic.id,
            matched=row.matched,
        )
    return row


async def _suggestion_by(session: AsyncSession, where: Any) -> Suggestion | None:
    found = await session.exec(
        select(Suggestion).where(where).execution_options(populate_existing=True)
    )
    return found.first()


async def report(
    session: AsyncSession, person_id: int, suggestion_id: int, now: datetime
) -> Suggestion:
    """Record ``person_id``'s report of a suggestion (once per person: a second report by
    the same person changes nothing). The ``REPORTS_TO_HIDE``-th report since the
    convener's last decision hides it pending the convener (``hidden_by_reports``)."""
    row = await _suggestion_by(session, col(Suggestion.id) == suggestion_id)
    if row is None:
        raise InvalidField("unknown_suggestion")
    if row.person_id == person_id:
        raise NotPermitted("own_suggestion")
    if row.status != Status.VISIBLE:
        # Hidden or held meanwhile: a report of one's own is harmless (the double tap
        # whose first press hid it), a new one has nothing left to hide.
        if await has_reported(session, person_id, suggestion_id):
            return row
        raise WrongState("suggestion_not_shown")
    added = (
        await session.exec(
            insert_for(session, SuggestionReport)
            .values(suggestion_id=suggestion_id, person_id=person_id, at=now)
            .on_conflict_do_nothing(index_elements=["suggestion_id", "person_id"])
            .returning(col(SuggestionReport.id))
        )
    ).scalar_one_or_none()
    if added is None:
        return row  # already reported by this person
    count = update(Suggestion).where(col(Suggestion.id) == suggestion_id)
    await session.exec(count.values(reports=col(Suggestion.reports) + 1))
    hide = (
        update(Suggestion)
        .where(col(Suggestion.id) == suggestion_id, col(Suggestion.status) == Status.VISIBLE)
        .where(col(Suggestion.reports) >= REPORTS_TO_HIDE)
        .values(status=Status.HIDDEN, hidden_by_reports=True)
    )
    if (await session.exec(hide)).rowcount:
        await audit.record(
            session,
            "suggestion.report_hidden",
            at=now,
            suggestion_id=suggestion_id,
            topic_id=row.topic_id,
            reports=REPORTS_TO_HIDE,
        )
    fresh = await _suggestion_by(session, col(Suggestion.id) == suggestion_id)
    assert fresh is not None
    return fresh


async def has_reported(session: AsyncSession, person_id: int, suggestion_id: int) -> bool:
    found = await session.exec(
        select(SuggestionReport.id).where(
            SuggestionReport.person_id == person_id,
            SuggestionReport.suggestion_id == suggestion_id,
        )
    )
    return found.first() is not None


async def moderate(
    session: AsyncSession,
    actor: Actor,
    suggestion_id: int,
    hide: bool,
    reason: str,
    now: datetime,
) -> Suggestion:
    """The convener of the topic's room hides or restores a suggestion, with a reason.

    Restoring clears the report count, so it takes ``REPORTS_TO_HIDE`` new reports to hide
    it again (the old reports' rows stay). A decision already in force (a double tap)
    changes nothing and writes no second audit row."""
    row = await _suggestion_by(session, col(Suggestion.id) == suggestion_id)
    if row is None:
        raise InvalidField("unknown_suggestion")
    topic = await session.get(Topic, row.topic_id)
    assert topic is not None
    if not may_moderate(actor, topic):
        raise NotPermitted("moderation_not_permitted")
    why = storable(reason).strip()
    field = label("fields", "reason")
    if not why:
        raise MissingField("missing_field", field=field)
    if len(why) > REASON_MAX:
        raise InvalidField("too_long", field=field, limit=REASON_MAX, length=len(why))
    decided = {"moderated_at": now, "moderated_by_id": actor.person_id, "moderation_reason": why}
    statement = update(Suggestion).where(col(Suggestion.id) == suggestion_id)
    if hide:
        # Report-hidden is still undecided: the convener's hide makes it their decision.
        pending = (col(Suggestion.status) != Status.HIDDEN) | col(Suggestion.hidden_by_reports)
        statement = statement.where(pending).values(
            status=Status.HIDDEN, hidden_by_reports=False, **decided
        )
    else:
        statement = statement.where(col(Suggestion.status) != Status.VISIBLE).values(
            status=Status.VISIBLE, hidden_by_reports=False, reports=0, **decided
        )
    if (await session.exec(statement)).rowcount:
        await audit.record(
            session,
            "suggestion.hide" if hide else "suggestion.restore",
            at=now,
            actor_id=actor.person_id,
            suggestion_id=suggestion_id,
            topic_id=row.topic_id,
            was=row.status,
            reason=why,
        )
    fresh = await _suggestion_by(session, col(Suggestion.id) == suggestion_id)
    assert fresh is not None
    return fresh


def _when(moment: datetime) -> str:
    local = moment.astimezone(CHINA)
    if local.time() == time():  # the end of the day before, as notices say it: "13日24时"
        day = local.date() - timedelta(days=1)
        return text("participation", "day_end", month=day.month, day=day.day)
    return text("participation", "when", month=local.month, day=local.day, time=f"{local:%H:%M}")


# --- reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    likes: int
    follows: int
    suggestions: int  # visible ones


@dataclass(frozen=True)
class Stance:
    """What one person has done on one topic (which buttons to offer)."""

    liked: bool
    following: bool


async def counts(session: AsyncSession, topic_id: int) -> Counts:
    likes = select(func.count()).where(col(Like.topic_id) == topic_id, col(Like.active))
    follows = select(func.count()).where(
        col(Follow.topic_id) == topic_id, col(Follow.ended_at).is_(None)
    )
    shown = select(func.count()).where(
        col(Suggestion.topic_id) == topic_id, col(Suggestion.status) == Status.VISIBLE
    )
    values = [(await session.exec(q)).one() for q in (likes, follows, shown)]
    return Counts(*values)


async def stance(session: AsyncSession, person_id: int, topic_id: int) -> Stance:
    liked = await session.exec(
        select(Like.id).where(
            Like.person_id == person_id, Like.topic_id == topic_id, col(Like.active)
        )
    )
    following = await session.exec(
        select(Follow.id).where(
            Follow.person_id == person_id,
            Follow.topic_id == topic_id,
            col(Follow.ended_at).is_(None),
        )
    )
    return Stance(liked.first() is not None, following.first() is not None)


async def follows_room(session: AsyncSession, person_id: int, room_id: int) -> bool:
    found = await session.exec(
        select(Follow.id).where(
            Follow.person_id == person_id,
            Follow.room_id == room_id,
            col(Follow.ended_at).is_(None),
        )
    )
    return found.first() is not None


async def visible_suggestions(
    session: AsyncSession, topic_id: int, *, limit: int = 20, offset: int = 0
) -> list[Suggestion]:
    """The topic's suggestions the public may read, oldest first."""
    found = await session.exec(
        select(Suggestion)
        .where(Suggestion.topic_id == topic_id, Suggestion.status == Status.VISIBLE)
        .order_by(col(Suggestion.id))
        .offset(offset)
        .limit(limit)
    )
    return list(found.all())


async def held_of(session: AsyncSession, person_id: int, topic_id: int) -> int:
    """How many of ``person_id``'s suggestions on the topic wait for the convener (their
    author sees them as awaiting review; nobody else sees them at all)."""
    found = await session.exec(
        select(func.count()).where(
            col(Suggestion.topic_id) == topic_id,
            col(Suggestion.person_id) == person_id,
            col(Suggestion.status) == Status.HELD,
        )
    )
    return found.one()


async def awaiting_moderation(
    session: AsyncSession, room_ids: Sequence[int], *, limit: int = 20
) -> list[Suggestion]:
    """Held and report-hidden suggestions on topics of ``room_ids``, oldest first: what the
    convener has to decide."""
    if not room_ids:
        return []
    pending = (col(Suggestion.status) == Status.HELD) | col(Suggestion.hidden_by_reports)
    found = await session.exec(
        select(Suggestion)
        .join(Topic, col(Topic.id) == col(Suggestion.topic_id))
        .where(col(Topic.room_id).in_(list(room_ids)), pending)
        .order_by(col(Suggestion.id))
        .limit(limit)
    )
    return list(found.all())


@dataclass(frozen=True)
class PublicPage:
    topics: list[Topic]
    total: int
    offset: int

    @property
    def more(self) -> int:
        return max(self.total - self.offset - len(self.topics), 0)


async def public_topics(
    session: AsyncSession, room_id: int, *, offset: int = 0, limit: int = 8
) -> PublicPage:
    """A room's public topics (publicized and on), newest publication first; an offset
    past the end gives the last page."""
    where = (
        col(Topic.room_id) == room_id,
        col(Topic.published_at).is_not(None),
        col(Topic.state).in_(sorted(PUBLIC_STATES)),
    )
    total = (await session.exec(select(func.count()).select_from(Topic).where(*where))).one()
    if total and offset >= total:
        offset = (total - 1) // limit * limit
    found = await session.exec(
        select(Topic)
        .where(*where)
        .order_by(col(Topic.published_at).desc(), col(Topic.id).desc())
        .offset(offset)
        .limit(limit)
    )
    return PublicPage(list(found.all()), total, offset)


async def public_topic(
    session: AsyncSession, *, topic_id: int | None = None, number: str = ""
) -> Topic | None:
    """A topic the public may see (by id or by number), or None."""
    query = select(Topic).where(col(Topic.state).in_(sorted(PUBLIC_STATES)))
    query = (
        query.where(Topic.id == topic_id)
        if topic_id is not None
        else query.where(Topic.number == number)
    )
    return (await session.exec(query)).first()
