"""The reminders of a meeting's registered participants: before it (``meeting.reminder``,
at the offsets of ``[meetings] reminder_minutes``, moved earlier out of the participant's
night) and, in the live window, the video link (``meeting.live``).

Each is keyed by the meeting's current start (the occurrence), so a reschedule makes the
reminders of the old start obsolete: the finder only ever computes them from the start the
meeting has now, and none goes out at the old time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.reminders.kinds import Due, Sweep
from storage.db import select_columns
from storage.meetings import Meeting, MeetingParticipant
from storage.models import Topic
from workflow.lifecycle import LIVE_BEFORE
from workflow.meetings import at_night, awake_before, their_zone, zone_label
from workflow.when import say_when

#: How far a night can move a reminder earlier (a whole night and the sweep's margin).
_NIGHT_SHIFT = timedelta(hours=10)


async def _upcoming(
    session: AsyncSession, sweep: Sweep, horizon: timedelta
) -> list[tuple[Meeting, MeetingParticipant, Topic]]:
    rows = await session.exec(
        select_columns(Meeting, MeetingParticipant, Topic)
        .join(MeetingParticipant, col(MeetingParticipant.meeting_id) == Meeting.id)
        .join(Topic, col(Topic.id) == Meeting.topic_id)
        .where(
            Meeting.status == "scheduled",
            col(Meeting.ends_at) > sweep.now,
            col(Meeting.starts_at) <= sweep.now + horizon,
            col(MeetingParticipant.registered_at).is_not(None),
        )
        .order_by(col(Meeting.starts_at), col(MeetingParticipant.id))
    )
    return [(m, p, t) for m, p, t in rows]


def _due(
    meeting: Meeting,
    person: MeetingParticipant,
    topic: Topic,
    sweep: Sweep,
    which: str,
    **more: str,
) -> Due:
    """One participant's reminder ``which`` ("1440", "30", "live") of the meeting's current
    start: the occurrence."""
    return Due(
        subject=f"meeting:{meeting.id}:{person.person_id}",
        occurrence=f"{meeting.starts_at:%Y%m%dT%H%MZ}:{which}",
        room_id=topic.room_id,
        topic_id=topic.id,
        context=_context(meeting, person, topic, sweep) | more,
        people=(person.person_id,),
    )


def _context(
    meeting: Meeting, person: MeetingParticipant, topic: Topic, sweep: Sweep
) -> dict[str, Any]:
    zone = their_zone(person)
    return {
        "title": topic.title,
        "number": topic.number,
        "name": person.display_name,
        "when": say_when(meeting.starts_at, now=sweep.now),
        "their_when": say_when(meeting.starts_at, zone, zone_name=zone_label(person), now=sweep.now)
        if person.zone
        else "",
        "place": meeting.place,
        "video_url": meeting.video_url,
        "url": f"{sweep.public_base_url}/m/{meeting.code}",
    }


async def meeting_reminders(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """For each registered participant of a meeting to come, the latest of its reminders
    whose time (moved out of their night) has come, if they registered before that time
    and it is not their night now."""
    offsets = sweep.settings.meeting_reminders
    if not offsets:
        return []
    found = []
    for meeting, person, topic in await _upcoming(session, sweep, max(offsets) + _NIGHT_SHIFT):
        if meeting.starts_at <= sweep.now:
            continue
        zone = their_zone(person)
        if at_night(sweep.now, zone):
            continue
        times = [
            (awake_before(meeting.starts_at - offset, zone, sweep.settings.sweep_interval), offset)
            for offset in offsets
        ]
        come = [(at, offset) for at, offset in times if at <= sweep.now]
        if not come:
            continue
        at, offset = max(come)
        assert person.registered_at is not None
        if at < person.registered_at:  # their join card said it all already
            continue
        minutes = str(int(offset.total_seconds() // 60))
        ahead = _ahead(meeting.starts_at - sweep.now)
        found.append(_due(meeting, person, topic, sweep, minutes, ahead=ahead))
    return found


async def live_links(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """The video link, to every registered participant, once the live window opens."""
    found = []
    for meeting, person, topic in await _upcoming(session, sweep, LIVE_BEFORE):
        if not meeting.video_url:
            continue
        found.append(_due(meeting, person, topic, sweep, "live"))
    return found


def _ahead(left: timedelta) -> str:
    """ "约23小时后" / "约30分钟后"."""
    minutes = max(int(left.total_seconds() // 60), 1)
    return f"约{round(minutes / 60)}小时后" if minutes >= 90 else f"约{minutes}分钟后"
