"""The migrations are the schema: they must match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

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
    assert await current_revision(database_url) == head_revision() == "0008"


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine: AsyncEngine) -> None:
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
