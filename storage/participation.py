"""The tables of the public's part: follows, likes, suggestions and their reports, screening
polls and their votes, WeChat subscription consents.

Apart from ``storage.models`` only to keep both modules readable; the same rules hold (no
hard deletes: a like withdrawn, a follow ended or a suggestion hidden keeps its row). Every
row a person's action makes has a unique key per person and thing, so a retried message or a
double tap is one row (ARCHITECTURE.md, "Participation and meetings"). Imported by
``storage.models`` so that the metadata always holds these tables too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field

from storage.models import _Table
from storage.types import UTCDateTime


class Follow(_Table, table=True):
    """A person following a topic (told when it moves on) or a room (a daily digest of its
    publicized topics and results). Exactly one of ``topic_id`` and ``room_id`` is set; an
    unfollow sets ``ended_at``, following again clears it."""

    __tablename__ = "follows"
    __table_args__ = (
        UniqueConstraint("person_id", "topic_id", name="uq_follows_topic"),
        UniqueConstraint("person_id", "room_id", name="uq_follows_room"),
        CheckConstraint("(topic_id IS NULL) <> (room_id IS NULL)", name="ck_follows_one_subject"),
        Index("ix_follows_topic", "topic_id"),
        Index("ix_follows_room", "room_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="people.id")
    topic_id: int | None = Field(default=None, foreign_key="topics.id")
    room_id: int | None = Field(default=None, foreign_key="rooms.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Like(_Table, table=True):
    """One person's 点赞 of one topic. ``active`` False: taken back (the row stays, so a
    like, unlike and like again is still one row)."""

    __tablename__ = "likes"
    __table_args__ = (
        UniqueConstraint("person_id", "topic_id", name="uq_likes_once"),
        Index("ix_likes_topic_active", "topic_id", "active"),
    )
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="people.id")
    topic_id: int = Field(foreign_key="topics.id")
    active: bool = True
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Suggestion(_Table, table=True):
    """A 跟帖建议 on a publicized topic.

    ``status``: ``visible``; ``held`` (matched the sensitive-word list: waits for the
    convener, its author sees it as awaiting review); ``hidden`` (by the convener, or by
    three reports pending the convener's decision; ``hidden_by_reports`` says which).
    ``key`` makes one message's suggestion one row, however often it is delivered."""

    __tablename__ = "suggestions"
    __table_args__ = (Index("ix_suggestions_topic_status", "topic_id", "status", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    topic_id: int = Field(foreign_key="topics.id")
    person_id: int = Field(foreign_key="people.id", index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="visible", max_length=12)
    #: The word of the sensitive-word list it matched (held ones), for the convener.
    matched: str | None = Field(default=None, max_length=100)
    reports: int = 0
    hidden_by_reports: bool = False
    moderated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    moderated_by_id: int | None = Field(default=None, foreign_key="people.id")
    moderation_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_type=UTCDateTime)


class SuggestionReport(_Table, table=True):
    """A resident's report (举报) of a suggestion: one per person and suggestion."""

    __tablename__ = "suggestion_reports"
    __table_args__ = (UniqueConstraint("suggestion_id", "person_id", name="uq_reports_once"),)
    id: int | None = Field(default=None, primary_key=True)
    suggestion_id: int = Field(foreign_key="suggestions.id")
    person_id: int = Field(foreign_key="people.id")
    at: datetime = Field(sa_type=UTCDateTime)


class Poll(_Table, table=True):
    """A screening poll (网络投票, Yancheng norms §13): candidate topics of a room put to the
    vote until ``closes_at``; results are shown only once it is closed. ``closed_at`` is set
    by the sweep that closes it and tells the voters (once)."""

    __tablename__ = "polls"
    __table_args__ = (Index("ix_polls_closes", "closed_at", "closes_at"),)
    id: int | None = Field(default=None, primary_key=True)
    room_id: int = Field(foreign_key="rooms.id", index=True)
    title: str = Field(max_length=100)
    created_by_id: int | None = Field(default=None, foreign_key="people.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    closes_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PollOption(_Table, table=True):
    __tablename__ = "poll_options"
    __table_args__ = (UniqueConstraint("poll_id", "topic_id", name="uq_poll_options_once"),)
    id: int | None = Field(default=None, primary_key=True)
    poll_id: int = Field(foreign_key="polls.id")
    topic_id: int = Field(foreign_key="topics.id")


class PollVote(_Table, table=True):
    """One person's vote in one poll (one vote per person: the unique key)."""

    __tablename__ = "poll_votes"
    __table_args__ = (UniqueConstraint("poll_id", "person_id", name="uq_poll_votes_once"),)
    id: int | None = Field(default=None, primary_key=True)
    poll_id: int = Field(foreign_key="polls.id")
    person_id: int = Field(foreign_key="people.id")
    option_id: int = Field(foreign_key="poll_options.id")
    at: datetime = Field(sa_type=UTCDateTime)


class SubscriptionConsent(_Table, table=True):
    """A WeChat subscription-notification consent (订阅通知), recorded from a
    ``subscribe_msg_popup_event``: ``accept`` for ``template_id``. A one-time consent
    (``long_term`` False) is used once (``used_at``); a long-term one until revoked."""

    __tablename__ = "subscription_consents"
    __table_args__ = (Index("ix_consents_person_template", "person_id", "template_id"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="people.id")
    openid: str = Field(max_length=128)
    template_id: str = Field(max_length=128)
    #: The topic the consent was asked for (None: asked for in general).
    topic_id: int | None = Field(default=None, foreign_key="topics.id")
    long_term: bool = False
    #: The popup event's identity (a re-delivered event is one consent).
    key: str = Field(max_length=200, unique=True)
    accepted_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
