"""Upgrades from every schema this project has shipped: a database built at each older
revision, with a row in every table it had, is migrated to the newest one; every row is
still there and reads back through the models (issue 14, item 6)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, date, datetime
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Column, Integer, MetaData, Table, func, insert, select, text
from sqlmodel import SQLModel

from storage.db import make_engine
from storage.migrate import alembic_config, upgrade

REVISIONS = [s.revision for s in ScriptDirectory.from_config(alembic_config("")).walk_revisions()]
OLDER = REVISIONS[:0:-1]  # oldest first, the newest left out
#: Columns a table's CHECK constraints want empty in the one row written.
EMPTY = {"follows": {"room_id"}}


def _value(column: Column[Any], ids: dict[str, Any]) -> Any:
    if column.name in EMPTY.get(str(column.table.name), ()):
        return None
    if column.foreign_keys:  # the parent's row; none for a row's own parent (a room's)
        return ids.get(next(iter(column.foreign_keys)).column.table.name)
    if isinstance(column.type, JSON):
        return {}
    try:
        kind = column.type.python_type
    except NotImplementedError:  # a type reflection does not know (SQLite's JSON)
        kind = str
    if kind is object:
        raise AssertionError(f"{column.table.name}.{column.name}: {column.type!r}")
    return {
        bool: False,
        int: 1,
        float: 1.0,
        str: "x",
        datetime: datetime(2026, 3, 2, 2, tzinfo=UTC),
        date: date(2026, 3, 2),
        dict: {},
        list: [],
        bytes: b"x",
    }[kind]


def _generated(table: Table, column: Column[Any]) -> bool:
    return column.primary_key and isinstance(column.type, Integer) and len(table.primary_key) == 1


async def _fill(url: str) -> dict[str, int]:
    """One row in every table, parents first; the row counts."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            tables = MetaData()
            await conn.run_sync(tables.reflect)
            ids: dict[str, Any] = {}
            for table in tables.sorted_tables:
                if table.name == "alembic_version":
                    continue
                row = {c.name: _value(c, ids) for c in table.columns if not _generated(table, c)}
                result = await conn.execute(insert(table).values(row))
                ids[table.name] = (result.inserted_primary_key or (1,))[0]
            return {name: 1 for name in ids}
    finally:
        await engine.dispose()


async def _counts(url: str, names: list[str]) -> dict[str, int]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            tables = MetaData()
            await conn.run_sync(tables.reflect)
            return {
                name: (
                    await conn.execute(select(func.count()).select_from(tables.tables[name]))
                ).scalar_one()
                for name in names
                if name in tables.tables
            }
    finally:
        await engine.dispose()


async def _read_through_models(url: str) -> None:
    """Every table's rows load into its model (types, defaults of added columns)."""
    from sqlmodel.ext.asyncio.session import AsyncSession

    import storage.models
    import storage.participation
    import storage.pushes
    import storage.webauth  # noqa: F401

    engine = make_engine(url)
    try:
        async with AsyncSession(engine) as session:
            for table in SQLModel.metadata.sorted_tables:
                await session.exec(select(table))  # type: ignore[call-overload]
    finally:
        await engine.dispose()


async def _fresh(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of this test's own (the suite's stays at the newest revision)."""
    url = os.environ.get("MASHANGYI_TEST_DATABASE_URL")
    if not url:
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('upgrades')}"
    name = url.rsplit("/", 1)[1] + "_upgrades"
    admin = make_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")

    async def create() -> None:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            await conn.execute(text(f"CREATE DATABASE {name}"))
        await admin.dispose()

    asyncio.run(create())
    return url.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.parametrize("revision", OLDER)
async def test_a_database_at_an_older_revision_upgrades_with_its_rows(
    scratch: str, revision: str
) -> None:
    if scratch.startswith("sqlite"):
        url = f"{scratch}/{revision}.db"  # a file of its own for each revision
    else:
        url = scratch
        await _fresh(url)
    await upgrade(url, revision)
    before = await _fill(url)
    await upgrade(url)
    assert await _counts(url, list(before)) == before
    await _read_through_models(url)
