"""participation

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 15:36:49.185908
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "polls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closes_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["people.id"],
        ),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("polls", schema=None) as batch_op:
        batch_op.create_index("ix_polls_closes", ["closed_at", "closes_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_polls_room_id"), ["room_id"], unique=False)

    op.create_table(
        "follows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=True),
        sa.Column("room_id", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(topic_id IS NULL) <> (room_id IS NULL)", name="ck_follows_one_subject"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
        ),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("person_id", "room_id", name="uq_follows_room"),
        sa.UniqueConstraint("person_id", "topic_id", name="uq_follows_topic"),
    )
    with op.batch_alter_table("follows", schema=None) as batch_op:
        batch_op.create_index("ix_follows_room", ["room_id"], unique=False)
        batch_op.create_index("ix_follows_topic", ["topic_id"], unique=False)

    op.create_table(
        "likes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("person_id", "topic_id", name="uq_likes_once"),
    )
    with op.batch_alter_table("likes", schema=None) as batch_op:
        batch_op.create_index("ix_likes_topic_active", ["topic_id", "active"], unique=False)

    op.create_table(
        "poll_options",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["poll_id"],
            ["polls.id"],
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("poll_id", "topic_id", name="uq_poll_options_once"),
    )
    op.create_table(
        "subscription_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("openid", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("template_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=True),
        sa.Column("long_term", sa.Boolean(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("accepted_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("subscription_consents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consents_person_template", ["person_id", "template_id"], unique=False
        )

    op.create_table(
        "suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("matched", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("reports", sa.Integer(), nullable=False),
        sa.Column("hidden_by_reports", sa.Boolean(), nullable=False),
        sa.Column("moderated_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("moderated_by_id", sa.Integer(), nullable=True),
        sa.Column("moderation_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["moderated_by_id"],
            ["people.id"],
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("suggestions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_suggestions_person_id"), ["person_id"], unique=False)
        batch_op.create_index(
            "ix_suggestions_topic_status", ["topic_id", "status", "id"], unique=False
        )

    op.create_table(
        "poll_votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("option_id", sa.Integer(), nullable=False),
        sa.Column("at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["option_id"],
            ["poll_options.id"],
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
        ),
        sa.ForeignKeyConstraint(
            ["poll_id"],
            ["polls.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("poll_id", "person_id", name="uq_poll_votes_once"),
    )
    op.create_table(
        "suggestion_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("suggestion_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
        ),
        sa.ForeignKeyConstraint(
            ["suggestion_id"],
            ["suggestions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("suggestion_id", "person_id", name="uq_reports_once"),
    )
    with op.batch_alter_table("channel_identities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unreachable_at", storage.types.UTCDateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("published_at", storage.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "results_published_at", storage.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index("ix_topics_published", ["published_at"], unique=False)
        batch_op.create_index("ix_topics_results_published", ["results_published_at"], unique=False)
        batch_op.create_index("ix_topics_room_published", ["room_id", "published_at"], unique=False)

    for column, action in (
        ("published_at", "publish"),
        ("results_published_at", "publish_results"),
    ):
        op.execute(
            f"UPDATE topics SET {column} = (SELECT min(e.at) FROM topic_events e "
            f"WHERE e.topic_id = topics.id AND e.action = '{action}')"
        )


def downgrade() -> None:
    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.drop_index("ix_topics_room_published")
        batch_op.drop_index("ix_topics_results_published")
        batch_op.drop_index("ix_topics_published")
        batch_op.drop_column("results_published_at")
        batch_op.drop_column("published_at")

    with op.batch_alter_table("channel_identities", schema=None) as batch_op:
        batch_op.drop_column("unreachable_at")

    op.drop_table("suggestion_reports")
    op.drop_table("poll_votes")
    with op.batch_alter_table("suggestions", schema=None) as batch_op:
        batch_op.drop_index("ix_suggestions_topic_status")
        batch_op.drop_index(batch_op.f("ix_suggestions_person_id"))

    op.drop_table("suggestions")
    with op.batch_alter_table("subscription_consents", schema=None) as batch_op:
        batch_op.drop_index("ix_consents_person_template")

    op.drop_table("subscription_consents")
    op.drop_table("poll_options")
    with op.batch_alter_table("likes", schema=None) as batch_op:
        batch_op.drop_index("ix_likes_topic_active")

    op.drop_table("likes")
    with op.batch_alter_table("follows", schema=None) as batch_op:
        batch_op.drop_index("ix_follows_topic")
        batch_op.drop_index("ix_follows_room")

    op.drop_table("follows")
    with op.batch_alter_table("polls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_polls_room_id"))
        batch_op.drop_index("ix_polls_closes")

    op.drop_table("polls")
