"""Shared fixtures. Every test runs on SQLite; set MASHANGYI_TEST_DATABASE_URL (e.g.
postgresql+asyncpg://postgres@127.0.0.1:5432/test) to run the same suite on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.migrate import upgrade
from workflow.clock import CHINA, FixedClock

PG_ENV = "MASHANGYI_TEST_DATABASE_URL"


async def _reset_postgres(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.postgres_only("why")``: skipped, before its fixtures are set up,
    unless the suite runs on PostgreSQL."""
    marker = item.get_closest_marker("postgres_only")
    if marker is not None and not os.environ.get(PG_ENV):
        why = f" ({marker.args[0]})" if marker.args else ""
        pytest.skip(f"needs PostgreSQL{why}")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database for this test session (via Alembic, not create_all)."""
    url = os.environ.get(PG_ENV)
    if url:
        asyncio.run(_reset_postgres(url))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    asyncio.run(upgrade(url))
    return url


async def empty_database(engine: AsyncEngine) -> None:
    """Remove every row (not the schema, which the session's migration made)."""
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for name in tables:
                await conn.execute(text(f'DELETE FROM "{name}"'))
        else:
            names = ", ".join(f'"{n}"' for n in tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await empty_database(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def empty_db(database_url: str) -> str:
    """For synchronous tests (the CLI runs its own event loop): an emptied database URL."""

    async def run() -> None:
        engine = make_engine(database_url)
        await empty_database(engine)
        await engine.dispose()

    asyncio.run(run())
    return database_url


@pytest.fixture
def sessions(engine: AsyncEngine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def clock() -> FixedClock:
    """Monday 2026-03-02 10:00 China time, an ordinary working day."""
    return FixedClock(datetime(2026, 3, 2, 10, 0, tzinfo=CHINA))
