"""The SQL that differs between PostgreSQL and SQLite, in one place: no module outside
``storage/`` imports ``sqlalchemy.dialects`` or asks which database it is on.

- ``insert_for``: the dialect's ``INSERT`` with ``ON CONFLICT`` (upserts, skip-if-exists).
- ``among``: a select limited to a column's values, however many.
- ``try_xact_lock``: a transaction-scoped advisory lock, taken without waiting.
- ``plan_for_values``: plan this transaction's statements for their actual values.
- ``one_writer``: whether the database takes one writing transaction at a time.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, TableClause, bindparam, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import TypeEngine

from storage.db import AnySelect

#: Something that knows its database: a session, a connection, or a dialect's name.
Bind = AsyncSession | AsyncConnection | str
#: An ``INSERT`` that takes ``on_conflict_do_nothing`` / ``on_conflict_do_update``.
Upsert = postgresql.Insert | sqlite.Insert
#: A column type, or its class (``Integer``).
ColumnType = TypeEngine[Any] | type[TypeEngine[Any]]
#: The two supported databases.
DIALECTS = ("postgresql", "sqlite")
#: Values per IN list on SQLite, within its limit on bound parameters (PostgreSQL takes
#: them as one array, see ``among``).
IN_CHUNK = 500


def dialect(bind: Bind) -> str:
    """The database's dialect name (``postgresql`` or ``sqlite``)."""
    if isinstance(bind, str):
        return bind
    if isinstance(bind, AsyncConnection):
        return bind.dialect.name
    return bind.get_bind().dialect.name


def insert_for(bind: Bind, table: TableClause | type[Any]) -> Upsert:
    """``INSERT INTO table`` in the dialect of ``bind``, with its ``ON CONFLICT`` clauses."""
    name = dialect(bind)
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {name!r}")  # pragma: no cover


def one_writer(bind: Bind) -> bool:
    """Whether the database takes one writing transaction at a time (SQLite): then
    transactions that write are better run one after the other than side by side."""
    return dialect(bind) == "sqlite"


def among(
    bind: Bind, query: AnySelect, column: Any, values: Sequence[Any], kind: ColumnType
) -> list[AnySelect]:
    """``query`` limited to rows whose ``column`` is one of ``values`` (of type ``kind``), in
    as few statements as the database allows; run them all and add up the rows.

    PostgreSQL: one statement, joined to ``unnest`` of a single array parameter (best
    planned for its values, see ``plan_for_values``): a hash join, whatever the number of
    values. An IN list of bound parameters would need many statements, and under a generic
    plan is searched linearly for every row. SQLite: IN lists of ``IN_CHUNK`` values.
    """
    if dialect(bind) == "postgresql":
        given = func.unnest(bindparam("among", list(values), type_=ARRAY(kind)))
        table = given.table_valued("value").render_derived(name="among")
        return [query.join(table, column == table.c.value)]
    return [
        query.where(column.in_(values[start : start + IN_CHUNK]))
        for start in range(0, len(values), IN_CHUNK)
    ]


async def try_xact_lock(session: AsyncSession, namespace: int, name: str) -> bool:
    """Take the advisory lock ``(namespace, name)`` for the rest of this transaction, without
    waiting; False when another transaction holds it. PostgreSQL only: on SQLite, which has
    one writer at a time, there is nobody to exclude and this is always True."""
    if dialect(session) != "postgresql":
        return True
    key = zlib.crc32(name.encode()) & 0x7FFFFFFF
    conn = await session.connection()
    result = await conn.execute(func.pg_try_advisory_xact_lock(namespace, key).select())
    return bool(result.scalar())


async def plan_for_values(session: AsyncSession) -> None:
    """Have PostgreSQL plan this transaction's statements for their actual values.

    The driver caches prepared statements, and after five runs PostgreSQL may switch to a
    generic plan that guesses ten rows for ``unnest(:array)`` and rescans it per row — 15 s
    instead of 15 ms for 10,000 overdue topics (bench/README.md). Mind foreign keys on the
    tables written meanwhile: their cached check plans would be re-planned for every row.
    No-op on SQLite, which has no generic plans.
    """
    if dialect(session) == "postgresql":
        setting = func.set_config("plan_cache_mode", "force_custom_plan", True)
        await (await session.connection()).execute(setting.select())
