"""The migrations are the schema: they must match the models exactly."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import make_url, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, select

from storage.db import make_engine, make_session_factory
from storage.migrate import current_revision, head_revision, upgrade
from storage.models import Person as PersonRow
from storage.models import RoleGrant


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
    assert await current_revision(database_url) == head_revision() == "0017"


async def test_a_row_referring_to_a_missing_one_is_refused(engine: AsyncEngine) -> None:
    """Also on SQLite, where foreign keys are not enforced unless asked (storage/db.py)."""
    with pytest.raises(IntegrityError):
        async with make_session_factory(engine)() as session, session.begin():
            session.add(RoleGrant(person_id=999, room_id=999, role="convener"))


async def test_a_commit_does_not_wait_for_a_read_in_progress(
    database_url: str, engine: AsyncEngine
) -> None:
    """A long read (a page, a CLI listing, a backup) must not hold up the dialogs' commits.
    On SQLite that takes WAL: with a rollback journal the commit waits for the reader."""
    async with contextlib.AsyncExitStack() as stack:
        if engine.dialect.name == "sqlite":
            # pysqlite opens no transaction for a SELECT; a plain connection can.
            reader = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
            stack.callback(reader.close)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM people").fetchall()
        else:
            conn = await stack.enter_async_context(engine.connect())
            await stack.enter_async_context(conn.begin())
            await conn.execute(text("SELECT count(*) FROM people"))
        writer = make_engine(database_url, busy_timeout_ms=1000)
        stack.push_async_callback(writer.dispose)
        async with make_session_factory(writer)() as session, session.begin():
            session.add(PersonRow(display_name="写入者"))
        async with make_session_factory(writer)() as session:
            names = (await session.exec(select(PersonRow.display_name))).all()
        assert names == ["写入者"]


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
