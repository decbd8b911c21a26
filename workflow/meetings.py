"""A topic's meeting and the people registered for it (协商议事, remote participants).

``keep`` is called by ``Lifecycle.apply`` for the meeting actions, in its transaction: the
first ``schedule_meeting`` makes the topic's meeting (with its public join code), a later
one reschedules it (``version`` + 1, so every reminder keyed by the old start is obsolete),
``cancel_meeting`` cancels it. ``register`` is opening the join link. The clock decides
whether a meeting is live (from ``LIVE_BEFORE`` before its start until its end) or over.
"""

from __future__ import annotations

import re
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.meetings import Meeting, MeetingParticipant
from storage.models import Topic
from workflow.clock import CHINA
from workflow.errors import InvalidField, WrongState
from workflow.lifecycle import LIVE_BEFORE, MEETING_LENGTH
from workflow.permissions import Actor
from workflow.research import check_organiser
from workflow.when import say_when

ACTIONS = frozenset({"schedule_meeting", "cancel_meeting"})
#: The join code: letters and digits only (a start payload, a WeChat scene, a URL path).
_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
CODE_LENGTH = 10
#: A participant's night, their own time: no reminder goes out in [NIGHT_START, NIGHT_END).
NIGHT_START, NIGHT_END = time(22, 0), time(7, 0)
NAME_MAX = 20
REMOTE, INVITED = "remote", "invited"


async def keep(
    session: AsyncSession,
    topic: Topic,
    action: str,
    values: Mapping[str, Any],
    actor_id: int | None,
    now: datetime,
) -> dict[str, Any]:
    """Make, reschedule or cancel the topic's meeting; what the event records besides its
    fields (the join code, the time in words, the time it was moved from)."""
    assert topic.id is not None
    meeting = await current_meeting(session, topic.id)
    if action == "cancel_meeting":
        if meeting is None:
            return {}
        meeting.status, meeting.cancelled_at = "cancelled", now
        meeting.cancel_reason, meeting.updated_at = str(values["reason"]), now
        session.add(meeting)
        await session.flush()
        return {"code": meeting.code, "meeting_id": meeting.id, "when": say_when(meeting.starts_at)}
    starts: datetime = values["time"]
    details = {
        "place": values["place"],
        "video_url": values.get("link") or "",
        "agenda": values.get("agenda") or "",
        "materials": values.get("materials") or "",
    }
    recorded: dict[str, Any] = {"when": say_when(starts, now=now)}
    if meeting is None:
        meeting = Meeting(
            topic_id=topic.id,
            code=await _new_code(session),
            starts_at=starts,
            ends_at=starts + MEETING_LENGTH,
            created_by_id=actor_id,
            created_at=now,
            updated_at=now,
            **details,
        )
    else:
        if meeting.starts_at != starts:
            recorded["previous_time"] = meeting.starts_at.isoformat()
            recorded["previous_when"] = say_when(meeting.starts_at, now=now)
        meeting.version += 1
        meeting.starts_at, meeting.ends_at = starts, starts + MEETING_LENGTH
        for name, value in details.items():
            setattr(meeting, name, value)
        meeting.updated_at = now
    session.add(meeting)
    await session.flush()
    return {**recorded, "code": meeting.code, "meeting_id": meeting.id}


async def _new_code(session: AsyncSession) -> str:
    while True:
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if await find_meeting(session, code) is None:
            return code


async def current_meeting(session: AsyncSession, topic_id: int) -> Meeting | None:
    """The topic's meeting that is not cancelled, if any."""
    found = await session.exec(
        select(Meeting)
        .where(Meeting.topic_id == topic_id, Meeting.status == "scheduled")
        .order_by(col(Meeting.id).desc())
        .limit(1)
    )
    return found.first()


def ics_key(meeting: Meeting) -> str:
    """Where a meeting's calendar file is kept in the media store, per schedule (a reschedule
    is a new version, hence a new file)."""
    return f"meetings/{meeting.code}-v{meeting.version}.ics"


def ics_of(key: str) -> str | None:
    """The meeting code an ``ics_key`` names; None for another key."""
    found = _ICS_KEY.fullmatch(key)
    return found["code"] if found else None


_ICS_KEY = re.compile(r"meetings/(?P<code>[A-Za-z0-9]+)-v[0-9]+\.ics")


async def find_meeting(session: AsyncSession, code: str) -> Meeting | None:
    if not code or len(code) > CODE_LENGTH * 2:
        return None
    return (await session.exec(select(Meeting).where(Meeting.code == code))).first()


def is_live(meeting: Meeting, now: datetime) -> bool:
    return meeting.starts_at - LIVE_BEFORE <= now < meeting.ends_at


def is_over(meeting: Meeting, now: datetime) -> bool:
    return meeting.status == "cancelled" or now >= meeting.ends_at


def check_open(meeting: Meeting, now: datetime) -> None:
    """Refuse joining a cancelled or finished meeting."""
    if meeting.status == "cancelled":
        raise WrongState("meeting_cancelled", when=say_when(meeting.starts_at, now=now))
    if now >= meeting.ends_at:
        raise WrongState("meeting_over", when=say_when(meeting.starts_at, now=now))


# -- where participants live -----------------------------------------------------------


@cache
def _cities() -> dict[str, str]:
    path = Path(__file__).with_name("cities.toml")
    return dict(tomllib.loads(path.read_text(encoding="utf-8"))["cities"])


@cache
def _zones() -> dict[str, str]:
    """Every IANA zone name, by its lower-case form (people type "america/new_york")."""
    return {name.lower(): name for name in available_timezones()}


@dataclass(frozen=True)
class Whereabouts:
    zone: str  # an IANA name
    lives_in: str  # as typed


def zone_of(text: str) -> Whereabouts:
    """A city we know or an IANA time zone; refused (``unknown_zone``) otherwise."""
    typed = text.strip().removesuffix("市")
    if typed in _cities():
        return Whereabouts(_cities()[typed], typed)
    name = _zones().get(typed.replace(" ", "_").lower())
    if name is None:
        raise InvalidField("unknown_zone", text=text.strip()[:30])
    try:
        ZoneInfo(name)
    except ZoneInfoNotFoundError:  # listed but not loadable: as good as unknown
        raise InvalidField("unknown_zone", text=text.strip()[:30]) from None
    return Whereabouts(name, typed)


def zone_label(participant: MeetingParticipant) -> str:
    """How a participant's zone is named to them ("纽约时间", "America/New_York")."""
    if participant.lives_in and participant.lives_in in _cities():
        return f"{participant.lives_in}时间"
    return participant.zone or "北京时间"


def their_zone(participant: MeetingParticipant) -> ZoneInfo:
    return ZoneInfo(participant.zone) if participant.zone else CHINA


def at_night(moment: datetime, zone: ZoneInfo) -> bool:
    local = moment.astimezone(zone).time()
    return local >= NIGHT_START or local < NIGHT_END


def awake_before(moment: datetime, zone: ZoneInfo, margin: timedelta) -> datetime:
    """``moment``, or when it falls in the night of ``zone``, ``margin`` (a sweep's
    interval, so that the sweep that sends it is not yet in the night) before that night
    began, 22:00 their time: a reminder goes earlier, never in the night. Reckoned on the
    local wall clock, so a daylight-saving change is taken into account."""
    if not at_night(moment, zone):
        return moment
    local = moment.astimezone(zone)
    evening = local.date() if local.time() >= NIGHT_START else local.date() - timedelta(days=1)
    night = datetime.combine(evening, NIGHT_START, zone)
    return (night - margin).astimezone(moment.tzinfo)


# -- registration ------------------------------------------------------------------------


async def participant(
    session: AsyncSession, meeting_id: int, person_id: int
) -> MeetingParticipant | None:
    found = await session.exec(
        select(MeetingParticipant).where(
            MeetingParticipant.meeting_id == meeting_id, MeetingParticipant.person_id == person_id
        )
    )
    return found.first()


def shown_name(text: str) -> str:
    """The name a participant wants shown, stripped; refused empty or too long."""
    name = text.strip()
    if not name:
        raise InvalidField("name_empty")
    if len(name) > NAME_MAX:
        raise InvalidField("name_too_long", limit=NAME_MAX, length=len(name))
    return name


async def register(
    session: AsyncSession,
    meeting: Meeting,
    person_id: int,
    *,
    display_name: str,
    whereabouts: Whereabouts | None,
    now: datetime,
    kind: str = REMOTE,
) -> MeetingParticipant:
    """Register ``person_id`` (again: their name and zone are updated, still one row)."""
    check_open(meeting, now)
    name = shown_name(display_name)
    assert meeting.id is not None
    row = await participant(session, meeting.id, person_id)
    if row is None:
        row = MeetingParticipant(
            meeting_id=meeting.id, person_id=person_id, kind=kind, created_at=now
        )
    row.display_name = name
    row.zone = whereabouts.zone if whereabouts else None
    row.lives_in = whereabouts.lives_in if whereabouts else ""
    row.registered_at = row.registered_at or now
    session.add(row)
    await session.flush()
    return row


async def invite(
    session: AsyncSession,
    topic: Topic,
    named: Sequence[int],
    actor: Actor,
    now: datetime,
) -> tuple[Meeting, list[MeetingParticipant]]:
    """The people the convener invites to the topic's meeting (they register through the
    invitation's button like anyone with the link); those invited before stay one row.
    The meeting and the rows newly made, to be told."""
    await check_organiser(session, actor, topic, "meeting")
    assert topic.id is not None
    meeting = await current_meeting(session, topic.id)
    if meeting is None:
        raise WrongState("meeting_cancelled", when="")
    check_open(meeting, now)
    assert meeting.id is not None
    made = []
    for person_id in named:
        if await participant(session, meeting.id, person_id) is None:
            row = MeetingParticipant(
                meeting_id=meeting.id, person_id=person_id, kind=INVITED, created_at=now
            )
            session.add(row)
            made.append(row)
    await session.flush()
    return meeting, made


async def registered(session: AsyncSession, meeting_id: int) -> list[MeetingParticipant]:
    rows = await session.exec(
        select(MeetingParticipant)
        .where(
            MeetingParticipant.meeting_id == meeting_id,
            col(MeetingParticipant.registered_at).is_not(None),
        )
        .order_by(col(MeetingParticipant.id))
    )
    return list(rows)


async def topic_participants(session: AsyncSession, topic_id: int) -> list[MeetingParticipant]:
    """Everyone registered for any meeting of the topic (a reschedule keeps them), once."""
    rows = await session.exec(
        select(MeetingParticipant)
        .join(Meeting, col(Meeting.id) == MeetingParticipant.meeting_id)
        .where(Meeting.topic_id == topic_id, col(MeetingParticipant.registered_at).is_not(None))
        .order_by(col(MeetingParticipant.id).desc())
    )
    seen: dict[int, MeetingParticipant] = {}
    for row in rows:
        seen.setdefault(row.person_id, row)
    return list(seen.values())


async def night_count(session: AsyncSession, topic_id: int, starts: datetime) -> int:
    """How many registered participants who gave where they live ``starts`` puts in their
    night (someone who did not is taken to be in China)."""
    return sum(
        1
        for p in await topic_participants(session, topic_id)
        if p.zone and at_night(starts, their_zone(p))
    )
