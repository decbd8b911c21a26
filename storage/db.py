"""The async engine and sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

SessionFactory = async_sessionmaker[AsyncSession]
#: A select of any number of columns of any types.
AnySelect = Select[*tuple[Any, ...]]


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, **kwargs: Any) -> AsyncEngine:
    """An engine for ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URLs.

    SQLite gets WAL (readers do not block the writer), foreign keys (off by default in
    SQLite) and a busy timeout so a second connection waits instead of failing at once.
    """
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # WAL + NORMAL: no corruption on power loss, at most the last commits lost;
            # one fsync per checkpoint instead of per commit.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.close()

        return engine
    # No pool_pre_ping: with asyncpg it costs three round trips (BEGIN, ping, ROLLBACK) per
    # checkout, more than a whole dialog step. A connection the server dropped fails its
    # statement once and is discarded by the pool (the platform or the outbox retries);
    # recycling bounds how long an idle connection is trusted.
    kwargs.setdefault("pool_recycle", 1800)
    return create_async_engine(url, **kwargs)


def make_priority_engine(url: str, timeout: float) -> AsyncEngine:
    """A second, small engine for the one write that must not queue behind the others:
    keeping a message WeChat is about to be told was received. Its own two connections, and
    it gives up after ``timeout`` seconds instead of waiting for a busy pool or lock."""
    return make_engine(
        url,
        busy_timeout_ms=int(timeout * 1000),
        pool_size=2,
        max_overflow=0,
        pool_timeout=timeout,
    )


def make_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def select_columns(*columns: Any) -> AnySelect:
    """``sqlmodel.select`` of more than four columns: its stubs stop at four, past which a
    select does not type-check at all. The rows come back as tuples of ``Any``."""
    return select(*columns)


@asynccontextmanager
async def transaction(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with factory() as session, session.begin():
        yield session
