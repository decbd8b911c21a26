"""The migrations are the schema: they must match the models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from storage.db import make_engine
from storage.migrate import current_revision, head_revision, upgrade


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}),
                SQLModel.metadata,
            )
        )
    assert diff == []


async def test_upgrade_twice_is_harmless(database_url: str) -> None:
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision() == "0012"


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine: AsyncEngine) -> None:
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1


async def test_outbox_loses_its_foreign_keys_and_keeps_its_rows_on_sqlite(tmp_path: Path) -> None:
    """0009 rebuilds the table on SQLite (no ALTER … DROP CONSTRAINT there): rows, the
    unique key and the indexes survive; an id no longer has to exist elsewhere."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await upgrade(url, "0008")
    row = (
        "INSERT INTO outbox_messages (idempotency_key, channel, address, person_id, topic_id, "
        "kind, body, status, attempts, not_before, created_at) VALUES "
        "(:key, 'console', 'a', :person, NULL, 'k', '{}', 'pending', 0, :at, :at)"
    )
    at = "2026-11-24 01:00:00.000000"
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO people (display_name, created_at) VALUES ('p', :at)"), {"at": at}
            )
            await conn.execute(text(row), {"key": "kept", "person": 1, "at": at})
        with pytest.raises(IntegrityError):  # before: the person must exist
            async with engine.begin() as conn:
                await conn.execute(text(row), {"key": "nobody", "person": 999, "at": at})
        await upgrade(url)
        async with engine.begin() as conn:
            await conn.execute(text(row), {"key": "nobody", "person": 999, "at": at})
            keys = (await conn.execute(text("SELECT idempotency_key FROM outbox_messages"))).all()
            indexes = {r[1] for r in await conn.execute(text("PRAGMA index_list(outbox_messages)"))}
        assert sorted(k for (k,) in keys) == ["kept", "nobody"]
        assert {"ix_outbox_due", "ix_outbox_messages_topic_id"} <= indexes
        with pytest.raises(IntegrityError):  # the idempotency key is still unique
            async with engine.begin() as conn:
                await conn.execute(text(row), {"key": "kept", "person": 1, "at": at})
    finally:
        await engine.dispose()
