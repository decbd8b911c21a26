"""The tables of research and meetings (商前调研, 协商议事): a topic's research
participants, its meetings and the people registered for each.

A meeting has its own small lifecycle beside the topic's (ARCHITECTURE.md, "Participation
and meetings"): scheduled (live in its window, finished after its end) or cancelled; a
reschedule moves ``starts_at`` and bumps ``version``, which the reminders and notices are
keyed by. Opinions and attendance (later) hang off ``meeting_participants``. No hard
deletes; every row a person's action makes has a unique key per person and thing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field

from storage.models import _Table
from storage.types import UTCDateTime


class Meeting(_Table, table=True):
    __tablename__ = "meetings"
    __table_args__ = (
        Index("ix_meetings_topic", "topic_id"),
        Index("ix_meetings_starts", "starts_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    topic_id: int = Field(foreign_key="topics.id")
    #: The public join link's code (``m_<code>`` start payload, WeChat scene, /m/<code>).
    code: str = Field(max_length=16, unique=True)
    #: "scheduled" or "cancelled"; live and finished are read off the clock.
    status: str = Field(default="scheduled", max_length=12)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    place: str = Field(max_length=200)
    #: The video-conference link (https), shown only in the live window; "" for none.
    video_url: str = Field(default="", max_length=500)
    agenda: str = Field(default="", sa_column=Column(Text, nullable=False))
    materials: str = Field(default="", sa_column=Column(Text, nullable=False))
    #: 1 when scheduled, +1 on every reschedule.
    version: int = 1
    created_by_id: int | None = Field(default=None, foreign_key="people.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_reason: str = Field(default="", max_length=500)


class MeetingParticipant(_Table, table=True):
    """Someone registered for a meeting: through its public join link ("remote") or named
    by the convener ("invited", who confirms with a button)."""

    __tablename__ = "meeting_participants"
    __table_args__ = (
        UniqueConstraint("meeting_id", "person_id", name="uq_meeting_participants_once"),
    )
    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meetings.id")
    person_id: int = Field(foreign_key="people.id")
    kind: str = Field(max_length=12)
    #: The name they want shown (remote participants choose it).
    display_name: str = Field(default="", max_length=100)
    #: An IANA time zone ("America/New_York"), None when not given (China time is used).
    zone: str | None = Field(default=None, max_length=64)
    #: Where they said they live ("纽约"), as typed.
    lives_in: str = Field(default="", max_length=64)
    #: None while registering (the name or place still being asked).
    registered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)


class ResearchParticipant(_Table, table=True):
    """A person named in a topic's research plan (members, stakeholders, department
    representatives), told of it and confirming with a button."""

    __tablename__ = "research_participants"
    __table_args__ = (
        UniqueConstraint("topic_id", "person_id", name="uq_research_participants_once"),
    )
    id: int | None = Field(default=None, primary_key=True)
    topic_id: int = Field(foreign_key="topics.id")
    person_id: int = Field(foreign_key="people.id")
    #: How they take part, as the convener named them (a role label).
    role: str = Field(default="", max_length=20)
    named_by_id: int | None = Field(default=None, foreign_key="people.id")
    named_at: datetime = Field(sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
