"""reminders_sent without foreign keys

``reminders_sent`` is an append-only log: the sweep (notices/reminders.py) inserts a row
per reminder given and never updates or deletes one. Its ``person_id``, ``topic_id`` and
``room_id`` are not user input: the sweep copies them from rows it has just read (the due
query, the role grants), in the same transaction. People, topics and rooms are never
deleted. The three foreign keys therefore guard nothing the sweep does not already ensure,
and they were most of the cost of its heaviest statement: by ``EXPLAIN ANALYZE`` the three
foreign-key triggers took about 580 of 690 ms per 10,000 rows in the first sweep of a
working day (each one a ``SELECT … FOR KEY SHARE`` on the referenced row), see
bench/README.md. The guarantees that matter stay: the unique key (kind, period, subject,
occurrence, person) that makes every reminder exactly-once, and the outbox rows written
in the same transaction.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import storage.types
from storage.migrations.foreign_keys import set_foreign_keys

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (column, referenced table, PostgreSQL's default constraint name as created by 0003)
FOREIGN_KEYS = (
    ("person_id", "people", "reminders_sent_person_id_fkey"),
    ("topic_id", "topics", "reminders_sent_topic_id_fkey"),
    ("room_id", "rooms", "reminders_sent_room_id_fkey"),
)


def _table(with_foreign_keys: bool) -> sa.Table:
    """The table as SQLite's batch mode should rebuild it (its constraints are unnamed)."""
    constraints: list[sa.Constraint] = [
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "kind", "period", "subject", "occurrence", "person_id", name="uq_reminders_sent_once"
        ),
    ]
    if with_foreign_keys:
        constraints += [
            sa.ForeignKeyConstraint([column], [f"{table}.id"]) for column, table, _ in FOREIGN_KEYS
        ]
    return sa.Table(
        "reminders_sent",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("occurrence", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=True),
        sa.Column("room_id", sa.Integer(), nullable=True),
        sa.Column("sent_on", sa.Date(), nullable=False),
        sa.Column("sent_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        *constraints,
    )


def upgrade() -> None:
    set_foreign_keys("reminders_sent", FOREIGN_KEYS, _table, present=False)


def downgrade() -> None:
    set_foreign_keys("reminders_sent", FOREIGN_KEYS, _table, present=True)
