"""Ending a follow: what an unfollow button (``ft:<id>:0``, ``fr:<id>:0``) and an unfollow
link (bot/web/unfollow.py) do.

Local to the pushes until the participation work (workflow/participation.py) lands on main;
then this becomes a call to its ``unfollow``. An unfollow also opts a person out of a
topic's pushes they would get as a liker or suggester: a follow row with ``ended_at`` set
is kept (or made) for that, and the pushes' audience (notices/audiences.py) leaves out
whoever has one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.participation import Follow

Subject = Literal["topic", "room"]


async def stop_following(
    session: AsyncSession, person_id: int, subject: Subject, subject_id: int, now: datetime
) -> bool:
    """End ``person_id``'s follow of the topic or room, in the caller's transaction; True if
    a follow ended (a second press, a link opened twice: False, and nothing else). One who
    never followed (told as a liker or suggester) is recorded as opted out: False too, as
    nothing they followed ended."""
    column = col(Follow.topic_id) if subject == "topic" else col(Follow.room_id)
    found = (
        await session.exec(
            select(Follow).where(Follow.person_id == person_id, column == subject_id).limit(1)
        )
    ).first()
    if found is not None:
        if found.ended_at is not None:
            return False
        found.ended_at = now
        session.add(found)
        await session.flush()
        return True
    # Never followed, yet told (a liker, a suggester): an ended follow records the opt-out.
    row = Follow(person_id=person_id, created_at=now, ended_at=now)
    if subject == "topic":
        row.topic_id = subject_id
    else:
        row.room_id = subject_id
    session.add(row)
    await session.flush()
    return False
