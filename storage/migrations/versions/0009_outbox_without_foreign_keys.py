"""outbox_messages without foreign keys

``outbox_messages`` is a queue of outbound messages. Its ``person_id`` and ``topic_id`` say
whom and what a message was about (``topics show``, editing a sent card); no code path
takes them from user input: every writer copies them from rows it has just read or
created in the same transaction (the topic a lifecycle step changed, the role grants, the
sender of the message being answered, a reminder's due query). People and topics are
never deleted. The two foreign keys therefore guard nothing those writers do not already
ensure, and each checked row costs a ``SELECT … FOR KEY SHARE`` on the referenced rows:
about a fifth of the heaviest reminder sweep (20,000 messages; bench/README.md). As with
``reminders_sent`` (0006), the index on ``topic_id`` stays, and so do the guarantees that
matter: the unique idempotency key and the row written in the transaction that caused it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from sqlalchemy.dialects import postgresql

import storage.types
from storage.migrations.foreign_keys import set_foreign_keys

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (column, referenced table, PostgreSQL's default constraint name as created by 0001)
FOREIGN_KEYS = (
    ("person_id", "people", "outbox_messages_person_id_fkey"),
    ("topic_id", "topics", "outbox_messages_topic_id_fkey"),
)


def _table(with_foreign_keys: bool) -> sa.Table:
    """The table as SQLite's batch mode should rebuild it (its constraints are unnamed)."""
    constraints: list[sa.SchemaItem] = [
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        sa.Index("ix_outbox_due", "status", "not_before"),
        sa.Index("ix_outbox_messages_topic_id", "topic_id"),
    ]
    if with_foreign_keys:
        constraints += [
            sa.ForeignKeyConstraint([column], [f"{table}.id"]) for column, table, _ in FOREIGN_KEYS
        ]
    return sa.Table(
        "outbox_messages",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("topic_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        *constraints,
    )


def upgrade() -> None:
    set_foreign_keys("outbox_messages", FOREIGN_KEYS, _table, present=False)


def downgrade() -> None:
    set_foreign_keys("outbox_messages", FOREIGN_KEYS, _table, present=True)
