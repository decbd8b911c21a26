"""inbound_receipts as a queue: messages acknowledged before they were handled

A WeChat message whose dialog step misses the 5-second reply deadline is answered only
once it is durably kept: its receipt row is written as ``queued`` with the message itself,
and it is handled later, in order with the sender's other messages.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    with op.batch_alter_table("inbound_receipts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sqlmodel.sql.sqltypes.AutoString(length=12),
                nullable=False,
                server_default="done",
            )
        )
        batch_op.add_column(
            sa.Column("user_ref", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "inbound",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("queued_at", storage.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
    op.create_index(
        "ix_inbound_receipts_queued",
        "inbound_receipts",
        ["channel", "user_ref", "queued_at"],
        sqlite_where=QUEUED,
        postgresql_where=QUEUED,
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_receipts_queued", table_name="inbound_receipts")
    with op.batch_alter_table("inbound_receipts", schema=None) as batch_op:
        batch_op.drop_column("last_error")
        batch_op.drop_column("attempts")
        batch_op.drop_column("queued_at")
        batch_op.drop_column("inbound")
        batch_op.drop_column("user_ref")
        batch_op.drop_column("status")
