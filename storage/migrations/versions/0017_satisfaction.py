"""satisfaction answers: "is it solved?" once a topic's result is implemented

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-03 14:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "satisfaction_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("round", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("answerer", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("answer", sqlmodel.sql.sqltypes.AutoString(length=14), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"]),
        sa.ForeignKeyConstraint(["topic_id"], ["topics.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("topic_id", "round", "person_id", name="uq_satisfaction_once"),
    )
    with op.batch_alter_table("satisfaction_answers", schema=None) as batch_op:
        batch_op.create_index("ix_satisfaction_topic", ["topic_id", "round"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("satisfaction_answers", schema=None) as batch_op:
        batch_op.drop_index("ix_satisfaction_topic")

    op.drop_table("satisfaction_answers")
