"""The topics a resident typing a new title is shown ("是不是这件事？", dialogs/similar_offer.py):
open or publicized topics of the room and the rooms nearby that read like it, so that a
duplicate becomes support (关注, 点赞) for the topic already raised (issue 12, item 8)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import select_columns
from storage.models import Room, Topic
from workflow.lifecycle import FINAL_STATES, PUBLIC_STATES
from workflow.rooms import nearby_rooms
from workflow.similar import most_similar

#: The newest open topics of those rooms compared. A village and its neighbours hold far
#: fewer; the bound keeps a worker's first look-up, which computes every profile, within a
#: chat reply's time (bench/README.md).
POOL = 2_000


@dataclass(frozen=True)
class Offered:
    """A similar topic as a resident may see it: its title and where it stands, nothing of
    its submitter."""

    topic_id: int
    number: str
    title: str
    state: str
    room: str

    @property
    def public(self) -> bool:
        return self.state in PUBLIC_STATES


async def similar_open_topics(
    session: AsyncSession, room_id: int, title: str, limit: int = 3
) -> list[Offered]:
    """Up to ``limit`` open topics of ``room_id`` and its nearby rooms (workflow/rooms.py)
    that read like ``title``, best first."""
    here = await session.get(Room, room_id)
    rooms = {room_id: here.name if here else ""}
    rooms |= {r.id: r.name for r in await nearby_rooms(session, room_id) if r.id is not None}
    rows = (
        await session.exec(
            select_columns(
                Topic.id, Topic.number, Topic.title, Topic.background, Topic.state, Topic.room_id
            )
            .where(
                col(Topic.room_id).in_(list(rooms)),
                col(Topic.state).not_in(sorted(str(s) for s in FINAL_STATES)),
            )
            .order_by(col(Topic.id).desc())
            .limit(POOL)
        )
    ).all()
    by_id = {row[0]: row for row in rows}
    candidates = [(row[0], row[2], row[3]) for row in rows]
    # CPU work (cutting words): off the event loop, which other people's messages share.
    matches = await asyncio.to_thread(most_similar, title, "", candidates, limit)
    return [
        Offered(key, number, found_title, state, rooms[found_room])
        for key, number, found_title, _, state, found_room in (by_id[m.key] for m in matches)
    ]
