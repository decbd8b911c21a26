"""The push jobs: one row per push to many (a topic publicized, its results published, its
progress recorded, a poll opened or closed), written in the transaction of the change that caused it
and expanded later, in small transactions, into one outbox row per person
(notices/pushes.py).

Apart from ``storage.models`` for the same reason as ``storage.participation``; imported by
it so the metadata always holds this table too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field

from storage.models import _Table
from storage.types import JSONData, UTCDateTime


class PushJob(_Table, table=True):
    """A push waiting to be (or being) expanded.

    ``event_key`` names the push (a topic event's id, ``poll-<id>``, ``poll-opened-<id>``):
    every outbox row it makes is keyed ``push:<event_key>:<person_id>``, so expanding a
    chunk twice (a restart, two workers) writes each person's message once. ``cursor`` is
    the last person id expanded: a restart resumes after it. ``audience`` says whom
    (``topic``: the topic's followers, likers and suggesters; ``poll``: the poll's voters
    and its convener; ``room``: the room's followers); ``exclude`` the people told
    otherwise (the submitter, who gets a text of their own, and the actor).
    ``message`` is the ``OutboundMessage`` JSON every recipient gets, before the unfollow
    button is added. ``done_at`` is set once the audience is exhausted.
    """

    __tablename__ = "push_jobs"
    __table_args__ = (Index("ix_push_jobs_open", "done_at", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=60, unique=True)
    kind: str = Field(max_length=60)
    audience: str = Field(max_length=20)
    #: The topic (audience "topic"), the poll ("poll") or the room ("room").
    subject_id: int
    topic_id: int | None = None
    exclude: list[int] = Field(default_factory=list, sa_type=JSONData)
    message: dict[str, Any] = Field(default_factory=dict, sa_type=JSONData)
    cursor: int = 0
    expanded: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
