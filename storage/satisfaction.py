"""The answers to "is it solved?" (满意 / 基本满意 / 不满意), asked when a topic's result is
implemented (workflow/satisfaction.py).

One row per person, topic and round: a round is one implementation of the topic (named
by when it was marked implemented), so a topic reopened and implemented again is asked
anew, and a retry or a double tap stays one row. ``answer`` "unanswered" is what the
reminder sweep records for a submitter who did not answer, also after the second asking.
Imported by ``storage.models`` so that the metadata always holds this table too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field

from storage.models import _Table
from storage.types import UTCDateTime


class SatisfactionAnswer(_Table, table=True):
    __tablename__ = "satisfaction_answers"
    __table_args__ = (
        UniqueConstraint("topic_id", "round", "person_id", name="uq_satisfaction_once"),
        Index("ix_satisfaction_topic", "topic_id", "round"),
    )
    id: int | None = Field(default=None, primary_key=True)
    topic_id: int = Field(foreign_key="topics.id")
    #: The implementation answered about: when the topic was marked implemented.
    round: datetime = Field(sa_type=UTCDateTime)
    person_id: int = Field(foreign_key="people.id")
    #: "submitter" or "public" (a follower, liker or suggester: counted apart).
    answerer: str = Field(max_length=12)
    #: satisfied | basically | dissatisfied | unanswered
    answer: str = Field(max_length=14)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime = Field(sa_type=UTCDateTime)
