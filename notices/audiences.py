"""Who is concerned by a push, read in chunks ordered by person id (the push jobs resume
after the last one, notices/pushes.py).

- a topic's audience: its followers (follow not ended), likers (like active) and
  suggesters (any suggestion of theirs, held or hidden ones too: they are still waiting
  to hear), each person once however many of these they are, minus whoever unfollowed the
  topic (an ended follow: also an opt-out of what they would hear as liker or suggester);
- a poll's audience: its voters and the convener who started it (its result);
- a room's audience: its followers (follow not ended): a poll opened there; what its topics
  did goes to them as the daily digest instead (notices/reminders/finders.py
  ``room_digests``, from ``room_followers``).

The people a push excludes (the submitter, told by notices/notify.py in a text of their
own; the actor) are left out here too, so one person gets one message per event.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, Literal

from sqlalchemy import Integer, String, exists, union
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ChannelIdentity
from storage.participation import Follow, Like, Poll, PollVote, Suggestion
from storage.sql import among

Audience = Literal["topic", "poll", "room"]
AUDIENCES: tuple[Audience, ...] = ("topic", "poll", "room")


def audience_of(name: str) -> Audience:
    """A push job's stored ``audience`` as one of ours (an unknown one is a bug: raised)."""
    for audience in AUDIENCES:
        if audience == name:
            return audience
    raise ValueError(f"unknown push audience {name!r}")


async def next_people(
    session: AsyncSession,
    audience: Audience,
    subject_id: int,
    *,
    after: int,
    limit: int,
    exclude: Collection[int] = (),
) -> list[int]:
    """The next ``limit`` people of the audience with ids above ``after``, in id order."""
    span = limit + len(exclude)

    def first(person: Any, *where: Any) -> Any:
        # Each branch gives at most ``span`` ids above the cursor: the smallest ``limit``
        # of the union (less the excluded) are among them, and no branch reads it all.
        return (
            select(person.label("person_id"))
            .where(*where, person > after)
            .order_by(person)
            .limit(span)
            .subquery()
        )

    if audience == "topic":
        limited = [
            first(
                col(Follow.person_id), Follow.topic_id == subject_id, col(Follow.ended_at).is_(None)
            ),
            first(col(Like.person_id), Like.topic_id == subject_id, col(Like.active).is_(True)),
            first(col(Suggestion.person_id), Suggestion.topic_id == subject_id),
        ]
    elif audience == "poll":
        limited = [
            first(col(PollVote.person_id), PollVote.poll_id == subject_id),
            first(col(Poll.created_by_id), Poll.id == subject_id),
        ]
    else:
        limited = [
            first(
                col(Follow.person_id), Follow.room_id == subject_id, col(Follow.ended_at).is_(None)
            )
        ]
    people = union(*(select(sub.c.person_id) for sub in limited)).subquery()
    query = select(people.c.person_id)
    if exclude:
        query = query.where(people.c.person_id.not_in(sorted(exclude)))
    if audience == "topic":
        opted_out = exists().where(
            col(Follow.person_id) == people.c.person_id,
            col(Follow.topic_id) == subject_id,
            col(Follow.ended_at).is_not(None),
        )
        query = query.where(~opted_out)
    rows = await session.exec(query.order_by(people.c.person_id).limit(limit))
    return [int(person) for person in rows]


async def unreachable(
    session: AsyncSession, addresses: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Of these (channel, address) pairs, those the platform said cannot be reached
    (Telegram 403), with since when (ISO), for the reason on their dead rows."""
    wanted = {address for _, address in addresses}
    if not wanted:
        return {}
    query = select(
        ChannelIdentity.channel, ChannelIdentity.external_id, ChannelIdentity.unreachable_at
    ).where(col(ChannelIdentity.unreachable_at).is_not(None))
    found: dict[tuple[str, str], str] = {}
    for statement in among(
        session, query, col(ChannelIdentity.external_id), sorted(wanted), String
    ):
        for channel, address, since in await session.exec(statement):
            found[(channel, address)] = since.isoformat()
    return found


async def room_followers(session: AsyncSession, room_ids: Collection[int]) -> dict[int, list[int]]:
    """Each room's followers (follow not ended), by room, in id order."""
    if not room_ids:
        return {}
    query = select(Follow.room_id, Follow.person_id).where(col(Follow.ended_at).is_(None))
    found: dict[int, list[int]] = {}
    for statement in among(session, query, col(Follow.room_id), sorted(room_ids), Integer):
        for room_id, person_id in await session.exec(statement):
            if room_id is not None:
                found.setdefault(room_id, []).append(person_id)
    return {room: sorted(set(people)) for room, people in found.items()}
