"""outbox: who holds a claim, and the head-of-line index per chat

``claimed_by`` names the worker identity holding a ``sending`` row (bot/identity.py): a
process restarted after being killed takes back its predecessor's rows at once instead of
waiting out the lease. ``ix_outbox_unsent_chat`` serves the claim's "no older unsent row in
this chat" test; it is partial (``status IN ('pending', 'sending')``), so it stays as small
as the queue, not the sent history. ``ix_outbox_due`` gains ``id``, the claim's tie-breaker:
a sweep writes 20,000 rows with one ``not_before``, and without ``id`` in the index the claim
sorted all of them (and tested each for its head of line) in every round, instead of walking
the index and stopping after a batch.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSENT = "status IN ('pending', 'sending')"


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True)
        )
    op.drop_index("ix_outbox_due", table_name="outbox_messages")
    op.create_index("ix_outbox_due", "outbox_messages", ["status", "not_before", "id"])
    op.create_index(
        "ix_outbox_unsent_chat",
        "outbox_messages",
        ["channel", "address", "id"],
        unique=False,
        sqlite_where=sa.text(UNSENT),
        postgresql_where=sa.text(UNSENT),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_unsent_chat", table_name="outbox_messages")
    op.drop_index("ix_outbox_due", table_name="outbox_messages")
    op.create_index("ix_outbox_due", "outbox_messages", ["status", "not_before"])
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
