"""Which things are due now, one finder per kind of reminder, and ``REMINDERS``, the registry;
and ``TASKS``, the sweep's timed work that tells through a push job instead."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.audiences import room_followers
from notices.poll_pushes import close_polls
from notices.reminders import satisfaction
from notices.reminders.kinds import (
    Due,
    Finder,
    Listed,
    Reminder,
    Repeat,
    Responsible,
    RoomRole,
    Submitter,
    Supervisors,
    Sweep,
    Task,
)
from notices.reminders.meetings import live_links, meeting_reminders
from storage.db import select_columns
from storage.models import JointRecommendation, ReminderSent, Room, Topic, TopicEvent
from storage.participation import Follow
from workflow import joint
from workflow.clock import CHINA
from workflow.lifecycle import Role
from workflow.overdue import OverdueStep, overdue_steps
from workflow.payloads import CARD, FOLLOW_ROOM, TOPIC, Setting
from workflow.texts import Catalogue, label

TEXTS = Catalogue(Path(__file__).parent.parent / "zh_CN.toml")


T = TypeVar("T")


def shared(
    query: Callable[[AsyncSession, Sweep], Awaitable[T]],
) -> Callable[[AsyncSession, Sweep], Awaitable[T]]:
    """Run ``query`` once per sweep, however many reminders use it."""

    async def once(session: AsyncSession, sweep: Sweep) -> T:
        if query not in sweep.memo:
            # A task, so that kinds swept at the same time all wait for its one run.
            sweep.memo[query] = asyncio.ensure_future(query(session, sweep))
        return await sweep.memo[query]

    once.__name__ = query.__name__
    return once


def _review_due(sweep: Sweep, step: OverdueStep) -> Due:
    clock = sweep.steps
    return Due(
        subject=f"topic:{step.topic_id}",
        occurrence=step.occurrence,
        room_id=step.room_id,
        topic_id=step.topic_id,
        submitter_id=step.submitter_id,
        state=step.state,
        context={
            "number": step.number,
            "title": step.title,
            "room": sweep.tree[step.room_id].name,
            "state": label("states", step.state),
            "step": step.state,
            "waited": clock.waited(step),
            "overdue": clock.overdue(step),
            "due": clock.due_on(step),
            "expected": clock.expected_by(step),
            "escalated": clock.escalated(step),
            "url": sweep.topic_url(step.number, step.state),
        },
    )


@shared
async def overdue_reviews(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """Review steps (first review, referral, Party approval, outcome review…) past due."""
    return [_review_due(sweep, step) for step in await overdue_steps(session, sweep.now)]


@shared
async def escalated_reviews(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """Overdue steps whose grace window of ``escalate_after_days`` has ended too."""
    return [due for due in await overdue_reviews(session, sweep) if due.context["escalated"]]


def rooms_with_few(action: str, fewer_than: int, levels: Iterable[str], from_month: int) -> Finder:
    """Rooms of ``levels`` with fewer than ``fewer_than`` ``action`` events this calendar
    year (China time), from ``from_month`` on; one occurrence per room and year."""
    levels = frozenset(levels)

    @shared
    async def find(session: AsyncSession, sweep: Sweep) -> list[Due]:
        if sweep.today.month < from_month:
            return []
        year = sweep.today.year
        start = datetime(year, 1, 1, tzinfo=CHINA)
        end = datetime(year + 1, 1, 1, tzinfo=CHINA)
        rows = await session.exec(
            select(TopicEvent.room_id, func.count())
            .where(
                TopicEvent.action == action,
                col(TopicEvent.at) >= start,
                col(TopicEvent.at) < end,
            )
            .group_by(col(TopicEvent.room_id))
        )
        counts = {room_id: count for room_id, count in rows}
        rooms = sorted(
            (r for r in sweep.tree.rooms.values() if r.level in levels), key=lambda r: r.code
        )
        return [
            Due(
                subject=f"room:{room.id}",
                occurrence=str(year),
                room_id=room.id,
                context={"room": room.name, "count": counts.get(room.id, 0), "year": year},
            )
            for room in rooms
            if counts.get(room.id, 0) < fewer_than
        ]

    return find


#: Towns, streets and parks hold at least two consultation meetings a year (001 §22); the
#: reminder comes in the fourth quarter, when there is still time.
quiet_rooms = rooms_with_few(
    "record_meeting", fewer_than=2, levels=("town", "street", "park"), from_month=10
)


def open_topic(due: Due) -> list[tuple[str, str]]:
    """A button that opens the submitter's view of the topic ("t:<id>", dialogs/my_topics)."""
    if due.topic_id is None:  # not about one topic: nothing to open
        return []
    return [(TEXTS.label("buttons", "open_topic"), TOPIC.build(due.topic_id))]


def open_card(due: Due) -> list[tuple[str, str]]:
    """A button that opens the review card with its action buttons ("o:<id>",
    dialogs/review.py): the nudge leads straight to the decision."""
    if due.topic_id is None:
        return []
    return [(TEXTS.label("buttons", "open_card"), CARD.build(due.topic_id))]


async def lapsed_joint_recommendations(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """Joint recommendations (联名荐题) whose co-signers did not all answer in time."""
    lapsed = (await session.exec(select(JointRecommendation).where(joint.lapsed(sweep.now)))).all()
    codes = {row.data["room"] for row in lapsed}
    rooms = (
        {
            r.code: r.id
            for r in (await session.exec(select(Room).where(col(Room.code).in_(codes)))).all()
        }
        if codes
        else {}
    )
    return [
        Due(
            subject=f"joint:{row.id}",
            occurrence="lapsed",
            room_id=room_id,
            submitter_id=int(row.data["initiator"]),
            context={"title": row.data["draft"]["title"]},
        )
        for row in lapsed
        if (room_id := rooms.get(row.data["room"])) is not None
    ]


#: What a room's followers hear of in their daily digest (as ``[digest]`` says it).
DIGESTED = ("publish", "publish_results", "record_progress")


async def room_digests(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """One digest per followed room and day: its topics publicized, results published and
    progress recorded since the day of the room's last digest (or since yesterday), up to
    today's midnight, China time. The occurrence is today: however many sweeps (and
    processes) run today, each follower gets it once; a follower who joins later in the
    day gets the same digest; nothing of a quiet day is lost, the next digest has it."""
    followed = (
        await session.exec(
            select(Follow.room_id)
            .where(col(Follow.room_id).is_not(None), col(Follow.ended_at).is_(None))
            .distinct()
        )
    ).all()
    followers = await room_followers(session, [r for r in followed if r is not None])
    if not followers:
        return []
    last = dict(
        (
            await session.exec(
                select(ReminderSent.room_id, func.max(ReminderSent.sent_on))
                .where(ReminderSent.kind == "room.digest")
                .group_by(col(ReminderSent.room_id))
            )
        ).all()
    )
    today = datetime.combine(sweep.today, datetime.min.time(), tzinfo=CHINA)
    yesterday = today - timedelta(days=1)
    starts = {
        room: (
            datetime.combine(last[room], datetime.min.time(), tzinfo=CHINA)
            if last.get(room)
            else yesterday
        )
        for room in followers
    }
    rows = await session.exec(
        select_columns(
            TopicEvent.room_id, TopicEvent.action, TopicEvent.at, Topic.number, Topic.title
        )
        .join(Topic, col(Topic.id) == TopicEvent.topic_id)
        .where(
            col(TopicEvent.action).in_(DIGESTED),
            col(TopicEvent.room_id).in_(sorted(followers)),
            col(TopicEvent.at) >= min(starts.values()),
            col(TopicEvent.at) < today,
        )
        .order_by(col(TopicEvent.at), col(TopicEvent.id))
    )
    items: dict[int, list[dict[str, str]]] = {}
    for room_id, action, at, number, title in rows:
        if at >= starts[room_id]:
            items.setdefault(room_id, []).append(
                {
                    "number": number,
                    "title": title,
                    "what": TEXTS.text("digest", action),
                    "url": sweep.topic_url(number, "publicized"),
                }
            )
    return [
        Due(
            subject=f"room:{room_id}",
            occurrence=sweep.today.isoformat(),
            room_id=room_id,
            context={
                "room": sweep.tree[room_id].name,
                "items": found,
                "count": len(found),
            },
            people=tuple(followers[room_id]),
        )
        for room_id, found in sorted(items.items())
    ]


def unfollow_room(due: Due) -> list[tuple[str, str]]:
    """The digest's unfollow button (``fr:<room_id>:0``)."""
    return [
        (
            TEXTS.label("buttons", "unfollow_room"),
            FOLLOW_ROOM.build(Setting(due.room_id, False)),
        )
    ]


# -- the registry -------------------------------------------------------------------------

REMINDERS: tuple[Reminder, ...] = (
    # Five working days are up (000 §18): whoever must act is nudged every working day.
    Reminder("review.nudge", overdue_reviews, Responsible(), Repeat.WORKDAY, buttons=open_card),
    # ... and the submitter is told, once per step, that it is late and by when to expect it.
    Reminder("review.delayed", overdue_reviews, Submitter(), buttons=open_topic),
    # N more working days: the district's supervisors get the list.
    Reminder("review.escalated", escalated_reviews, Supervisors(), digest=True),
    # Fourth quarter: rooms short of two meetings this year, and the list for supervisors.
    Reminder("activity.low", quiet_rooms, RoomRole(Role.CONVENER)),
    Reminder("activity.low_list", quiet_rooms, Supervisors(), digest=True),
    # A joint recommendation nobody finished answering: its member hears that it lapsed.
    Reminder("joint.lapsed", lapsed_joint_recommendations, Submitter()),
    # A meeting's registered participants: reminded before it, never in their night, and
    # sent the video link when the live window opens (not in office hours: on their clock).
    Reminder("meeting.reminder", meeting_reminders, Listed(), office_hours=False),
    Reminder("meeting.live", live_links, Listed(), office_hours=False),
    # A room's followers: one digest a day of what its topics did (notices/pushes.py tells a
    # topic's own audience at once).
    # Implemented, and the submitter has not said whether it is solved: asked once more,
    # then recorded as unanswered (workflow/satisfaction.py).
    Reminder(
        satisfaction.AGAIN, satisfaction.ask_again, Submitter(), buttons=satisfaction.answer_buttons
    ),
    Reminder(
        "satisfaction.unanswered", satisfaction.record_unanswered, Listed(), office_hours=False
    ),
    Reminder(
        "room.digest",
        room_digests,
        Listed(),
        buttons=unfollow_room,
        unfollow=lambda due: ("room", due.room_id),
    ),
)


async def closing_polls(session: AsyncSession, sweep: Sweep) -> int:
    return await close_polls(session, sweep.now)


TASKS: tuple[Task, ...] = (
    # A screening poll's time is up: it closes, and its voters and convener hear the result
    # through a push job (at once, not in office hours: it is the answer to what they did).
    Task("poll.closed", closing_polls),
)
