"""The tables. Plain strings for states and roles: the rules about them live in workflow/.

Nothing here is ever hard-deleted: rows are closed (``revoked_at``, a terminal state,
``status``) instead, and topic history is the append-only ``topic_events`` table.

Over 400 lines on purpose: every table in one module, the schema the migrations are checked
against (tests/test_migrations.py), read in one place with its indexes and constraints.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Column, Index, Table, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from storage.types import JSONData, UTCDateTime

#: Outbox rows not yet sent, nor given up: the predicate of the partial index the claim uses
#: (written out the same way in the queries, so SQLite recognizes the index as usable).
UNSENT = "status IN ('pending', 'sending')"


if TYPE_CHECKING:

    class _Table(SQLModel):
        # SQLModel's stubs leave out the Core table that a table model gets at class creation.
        __table__: ClassVar[Table]

else:
    _Table = SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Room(_Table, table=True):
    """A consultation room (协商议事室); rooms form a tree city → district → town → village."""

    __tablename__ = "rooms"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, unique=True)
    name: str = Field(max_length=100)
    level: str = Field(max_length=20)
    parent_id: int | None = Field(default=None, foreign_key="rooms.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Person(_Table, table=True):
    __tablename__ = "people"
    id: int | None = Field(default=None, primary_key=True)
    display_name: str = Field(default="", max_length=100)
    #: Private: for call-backs only, never shown publicly.
    phone: str | None = Field(default=None, max_length=32, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ChannelIdentity(_Table, table=True):
    """A chat identity (WeChat openid, Telegram user id, console name) of a person."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="people.id", index=True)
    channel: str = Field(max_length=20)
    external_id: str = Field(max_length=128)
    #: When the person last wrote to us: WeChat customer-service messages need it (48 h).
    last_inbound_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: The platform said this chat cannot be reached (Telegram 403: the bot was blocked);
    #: nothing more is sent to it until the person writes again.
    unreachable_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RoleGrant(_Table, table=True):
    __tablename__ = "role_grants"
    __table_args__ = (Index("ix_role_grants_room_role", "room_id", "role"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="people.id", index=True)
    room_id: int = Field(foreign_key="rooms.id")
    role: str = Field(max_length=20)
    granted_by_id: int | None = Field(default=None, foreign_key="people.id")
    granted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by_id: int | None = Field(default=None, foreign_key="people.id")
    #: The invite this grant was taken with (None: granted otherwise, e.g. the demo).
    invite_id: int | None = Field(default=None, foreign_key="invites.id")


class TopicCounter(_Table, table=True):
    """Per prefix and year sequence behind human topic numbers (QJP-2026-000123)."""

    __tablename__ = "topic_counters"
    prefix: str = Field(primary_key=True, max_length=40)
    year: int = Field(primary_key=True)
    last: int = 0


class Topic(_Table, table=True):
    __tablename__ = "topics"
    __table_args__ = (
        Index("ix_topics_room_state", "room_id", "state"),
        Index("ix_topics_state_due", "state", "review_due_at"),
        # The public lists (码上建议, 码上查情): newest publication first, city-wide or by room.
        Index("ix_topics_published", "published_at"),
        Index("ix_topics_room_published", "room_id", "published_at"),
        Index("ix_topics_results_published", "results_published_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=60, unique=True)
    #: The room responsible for the current step (changes on transfer and referral).
    room_id: int = Field(foreign_key="rooms.id")
    source: str = Field(max_length=20)
    title: str = Field(max_length=200)
    background: str = Field(default="", sa_column=Column(Text, nullable=False))
    submitter_id: int | None = Field(default=None, foreign_key="people.id", index=True)
    #: Private call-back number given with this topic.
    contact_phone: str | None = Field(default=None, max_length=32)
    location: dict[str, Any] | None = Field(default=None, sa_type=JSONData)
    category: str | None = Field(default=None, max_length=40)
    state: str = Field(max_length=30)
    step_started_at: datetime = Field(sa_type=UTCDateTime)
    #: End of the five-working-day review window, or None when no review clock runs.
    review_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: The latest value of every field recorded by an action (reasons, meeting, outcome…).
    facts: dict[str, Any] = Field(default_factory=dict, sa_type=JSONData)
    #: When it was publicized (公示) and its results published (结果公示): set once by the
    #: lifecycle (``Transition.stamps``), what the public lists are ordered by.
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    results_published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: Optimistic-lock counter: two reviewers pressing at once, exactly one wins.
    version: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class TopicEvent(_Table, table=True):
    """Append-only audit trail: one row per change of a topic."""

    __tablename__ = "topic_events"
    __table_args__ = (
        UniqueConstraint("topic_id", "seq"),
        # Counting actions in a period (meetings held this year, for the yearly sweep).
        Index("ix_topic_events_action_at", "action", "at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    topic_id: int = Field(foreign_key="topics.id")
    seq: int
    actor_id: int | None = Field(default=None, foreign_key="people.id")
    #: The role the actor acted in ("submitter", "convener", "system", …).
    actor_role: str = Field(max_length=20)
    action: str = Field(max_length=40)
    from_state: str | None = Field(default=None, max_length=30)
    to_state: str = Field(max_length=30)
    from_room_id: int | None = Field(default=None, foreign_key="rooms.id")
    room_id: int = Field(foreign_key="rooms.id")
    fields: dict[str, Any] = Field(default_factory=dict, sa_type=JSONData)
    at: datetime = Field(sa_type=UTCDateTime)


class Attachment(_Table, table=True):
    """A photo, recording or file. Arrives during a dialog (no topic yet), is downloaded
    from the platform by a background loop (``status`` pending → stored | failed) and is
    linked to the topic when the person confirms."""

    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_status", "status"),)
    id: int | None = Field(default=None, primary_key=True)
    topic_id: int | None = Field(default=None, foreign_key="topics.id", index=True)
    event_id: int | None = Field(default=None, foreign_key="topic_events.id")
    uploaded_by_id: int | None = Field(default=None, foreign_key="people.id")
    kind: str = Field(max_length=20)
    #: Where it came from: the channel and the platform's media reference.
    channel: str = Field(default="", max_length=20)
    source_ref: str = Field(default="", max_length=300)
    status: str = Field(default="pending", max_length=12)
    attempts: int = 0
    #: A failed download is tried again after this (backing off), not at once.
    not_before: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    storage_key: str = Field(default="", max_length=300)
    content_type: str = Field(default="application/octet-stream", max_length=100)
    size_bytes: int = 0
    sha256: str = Field(default="", max_length=64)
    #: e.g. WeChat's speech recognition of a voice message.
    text: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_type=UTCDateTime)


class ButtonRef(_Table, table=True):
    """What a reviewer's button stands for. The button carries only ``token``; a press is
    honoured only by the person it was made for, only once, and only while the topic is
    still at ``topic_version`` (and the role and state are checked again on top)."""

    __tablename__ = "button_refs"
    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(max_length=24, unique=True)
    person_id: int = Field(foreign_key="people.id")
    topic_id: int = Field(foreign_key="topics.id", index=True)
    action: str = Field(max_length=40)
    topic_version: int
    created_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CardMessage(_Table, table=True):
    """A review card as sent on a platform that can edit messages (Telegram): when the
    topic moves on, every card of it is edited to say who did what and when."""

    __tablename__ = "card_messages"
    __table_args__ = (UniqueConstraint("channel", "chat_id", "message_id"),)
    id: int | None = Field(default=None, primary_key=True)
    topic_id: int = Field(foreign_key="topics.id", index=True)
    channel: str = Field(max_length=20)
    chat_id: str = Field(max_length=128)
    message_id: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)


class JointRecommendation(_Table, table=True):
    """A member's recommendation waiting for its co-signers (联名荐题); the topic opens
    when all agree. ``data`` holds the draft, the room, the initiator and the answers."""

    __tablename__ = "joint_recommendations"
    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(max_length=24, unique=True)
    #: waiting → opened | declined | failed
    status: str = Field(max_length=12)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONData)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class InboundReceipt(_Table, table=True):
    """One row per platform message handled: a retry of the same message finds it and
    gets the same replies back, so a message has exactly one effect.

    A message acknowledged before it was handled (WeChat's 5-second deadline passed) is
    written first as ``queued``, carrying the message itself: it is then handled later, in
    order with the person's other messages, and its replies go out through the outbox
    (dialogs/inbox.py). ``queued_at`` stays set once the row is ``done``: that is how every
    later delivery of the message knows its replies do not go in a passive reply.
    """

    __tablename__ = "inbound_receipts"
    __table_args__ = (
        UniqueConstraint("channel", "key"),
        # Only the few queued rows are indexed: the drain order and "does this person have
        # older messages waiting?", which every message asks.
        Index(
            "ix_inbound_receipts_queued",
            "channel",
            "user_ref",
            "queued_at",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    key: str = Field(max_length=160)
    replies: list[Any] = Field(default_factory=list, sa_type=JSONData)
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    #: done | queued (kept, not yet handled) | failed (could not be handled; see last_error)
    status: str = Field(default="done", max_length=12)
    #: The sender (queued rows): one person's queued messages are handled oldest first.
    user_ref: str | None = Field(default=None, max_length=128)
    #: The message itself (queued rows), to handle it later.
    inbound: dict[str, Any] | None = Field(default=None, sa_type=JSONData)
    queued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class InboundFailure(_Table, table=True):
    """A platform update that was answered 2xx without being handled: refused at the edge
    (an impossible id, JSON nested too deep) or failing for a reason a retry cannot fix.
    The platform would re-deliver it forever on a 5xx; kept here once per update instead
    (a re-delivery counts in ``deliveries``), for an operator to look at."""

    __tablename__ = "inbound_failures"
    __table_args__ = (UniqueConstraint("channel", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    #: The update's identity on its platform (Telegram update_id, WeChat MsgId), or a hash
    #: of the body when it has none we could read.
    key: str = Field(max_length=160)
    #: The exception's type, or "refused" for what the edge turned away.
    error: str = Field(max_length=100)
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    #: The first few hundred characters of the body, made storable.
    excerpt: str = Field(default="", sa_column=Column(Text, nullable=False))
    deliveries: int = 1
    first_seen_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)


class OutboxMessage(_Table, table=True):
    """One message to one chat identity; written in the transaction that caused it."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        # The claim walks it in order (status, not_before, id) and stops at a batch.
        Index("ix_outbox_due", "status", "not_before", "id"),
        # Head of line per chat (notices/outbox.py): "is there an older unsent row of this
        # chat?" Partial, so it holds only the few unsent rows, not the sent history.
        Index(
            "ix_outbox_unsent_chat",
            "channel",
            "address",
            "id",
            sqlite_where=text(UNSENT),
            postgresql_where=text(UNSENT),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    channel: str = Field(max_length=20)
    address: str = Field(max_length=128)
    #: Whom and what it is about. No foreign keys (migration 0009): every writer copies
    #: them from rows it has just read, and they cost a fifth of a heavy reminder sweep.
    person_id: int | None = None
    topic_id: int | None = Field(default=None, index=True)
    kind: str = Field(max_length=60)
    body: dict[str, Any] = Field(default_factory=dict, sa_type=JSONData)
    #: pending → sending → sent | dead
    status: str = Field(default="pending", max_length=12)
    attempts: int = 0
    not_before: datetime = Field(sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: The worker identity holding the claim (bot/identity.py): a restarted process takes
    #: back its dead predecessor's rows at once instead of waiting out the lease.
    claimed_by: str | None = Field(default=None, max_length=120)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ReminderSent(_Table, table=True):
    """One reminder given to one person: the scheduler's whole memory (notices/reminders/).

    The row is inserted before its outbox message, in the same transaction, and the unique
    key makes a second send of the same reminder impossible — after a restart, and with
    several processes sweeping one PostgreSQL database at once.
    """

    __tablename__ = "reminders_sent"
    __table_args__ = (
        # Column order serves the sweep's "already sent?" lookup: kind, period, subjects.
        UniqueConstraint(
            "kind", "period", "subject", "occurrence", "person_id", name="uq_reminders_sent_once"
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    #: "" when the reminder is given once per occurrence; else the China-local day it was
    #: given on (reminders repeated at most once per working day).
    period: str = Field(default="", max_length=10)
    #: What it is about: "topic:42", "room:7".
    subject: str = Field(max_length=40)
    #: Which time of it: a review step (its start), a year, a meeting. A new occurrence (the
    #: topic moved on and came back, next year) is reminded anew.
    occurrence: str = Field(max_length=40)
    #: No foreign keys on these three (migration 0006): an append-only log whose ids the
    #: sweep copies from rows it has just read; the checks cost most of its insert time.
    person_id: int
    topic_id: int | None = None
    room_id: int | None = None
    sent_on: date
    sent_at: datetime = Field(sa_type=UTCDateTime)


class DialogState(_Table, table=True):
    """Where a person is in a conversation; kept here so a restart resumes it."""

    __tablename__ = "dialog_states"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    external_id: str = Field(max_length=128)
    flow: str = Field(max_length=40)
    step: str = Field(max_length=40)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONData)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class Invite(_Table, table=True):
    """A one-time, expiring invitation to take ``role`` in a room (``mashangyi invite``).

    Only the SHA-256 of the secret is kept: the link or QR code printed once is the only
    copy of the secret. Used, revoked and expired invites stay as they are.
    """

    __tablename__ = "invites"
    id: int | None = Field(default=None, primary_key=True)
    #: Hex SHA-256 of the secret carried in the link / scene string.
    secret_hash: str = Field(max_length=64, unique=True)
    room_id: int = Field(foreign_key="rooms.id")
    role: str = Field(max_length=20)
    #: None when made from the command line.
    created_by_id: int | None = Field(default=None, foreign_key="people.id")
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    used_by_id: int | None = Field(default=None, foreign_key="people.id")
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEntry(_Table, table=True):
    """Append-only record of who changed what outside topics: role grants and revocations,
    invites made, revoked and refused."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action_at", "action", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    #: None: the command line or the system.
    actor_id: int | None = Field(default=None, foreign_key="people.id", index=True)
    #: e.g. "role.grant", "role.revoke", "invite.create", "invite.refuse".
    action: str = Field(max_length=40)
    #: What it was about (ids, room code, role, reason); never a secret.
    subject: dict[str, Any] = Field(default_factory=dict, sa_type=JSONData)
    at: datetime = Field(sa_type=UTCDateTime)


# The public's tables (follows, likes, suggestions, polls, consents), the push jobs, the
# satisfaction answers and the web sign-in states live in their own modules; importing
# them here keeps them in the metadata wherever the models are loaded.
import storage.meetings  # noqa: E402
import storage.participation  # noqa: E402
import storage.pushes  # noqa: E402
import storage.satisfaction  # noqa: E402
import storage.webauth  # noqa: E402, F401
