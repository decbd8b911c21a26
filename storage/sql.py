"""The SQL that differs between PostgreSQL and SQLite, in one place: no module outside
``storage/`` imports ``sqlalchemy.dialects`` or asks which database it is on.

- ``insert_for``: the dialect's ``INSERT`` with ``ON CONFLICT`` (upserts, skip-if-exists).
- ``among``: a select limited to a column's values, however many.
- ``array_of``: many values as one PostgreSQL array parameter, cheaply encoded.
- ``try_xact_lock``: a transaction-scoped advisory lock, taken without waiting.
- ``plan_for_values``: plan this transaction's statements for their actual values.
- ``one_writer``: whether the database takes one writing transaction at a time.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    String,
    TableClause,
    Text,
    bindparam,
    cast,
    func,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import TypeDecorator, TypeEngine

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
        given = func.unnest(array_of("among", values, kind))
        table = given.table_valued("value").render_derived(name="among")
        return [query.join(table, column == table.c.value)]
    return [
        query.where(column.in_(values[start : start + IN_CHUNK]))
        for start in range(0, len(values), IN_CHUNK)
    ]


#: Separators of ``array_of``'s packed text: ASCII unit and record separators, which no
#: value we write contains (JSON escapes them; the edge refuses control characters).
_SEPARATOR, _NULL = "\x1f", "\x1e"


def array_of(name: str, values: Sequence[Any], kind: ColumnType) -> ColumnElement[Any]:
    """``values`` as one PostgreSQL array of ``kind``, bound as the parameter ``name``.

    Text and integers go as one text parameter that the server splits
    (``string_to_array``): asyncpg's array encoder checks every element against three
    abstract base classes, which cost a sweep about a sixth of its time (20,000 reminders
    write some 400,000 array elements; bench/README.md). Other types, and text that holds
    a separator, go as an ordinary array parameter.
    """
    column = kind() if isinstance(kind, type) else kind
    # SQLModel's str columns are AutoString, a decorator around String.
    base = column.impl_instance if isinstance(column, TypeDecorator) else column
    packed: str | None = None
    kinds = set(map(type, values))  # C loops throughout: this runs on 400,000 values a sweep
    nulls = values.count(None) if type(None) in kinds else 0
    if isinstance(base, Integer):
        element: TypeEngine[Any] = base
        separator, null = ",", ""
        if kinds <= {int, type(None)}:
            texts = map(str, values) if not nulls else ("" if v is None else str(v) for v in values)
            packed = separator.join(texts)
    elif isinstance(base, String):
        # Text, not the column's VARCHAR(n): an explicit cast to it would cut a long value
        # silently, where assigning text to the column refuses it (as a single INSERT does).
        element = Text()
        separator, null = _SEPARATOR, _NULL
        if kinds <= {str, type(None)}:
            given = values if not nulls else (null if v is None else v for v in values)
            packed = separator.join(given)
            # A value holding a separator would split wrongly: those go as an array.
            if packed.count(separator) != len(values) - 1 or packed.count(null) != nulls:
                packed = None
    else:
        element = column
    # "" splits into no element at all: one empty value ([""], [None]) goes as an array.
    if packed is None or (packed == "" and values):
        return bindparam(name, list(values), type_=ARRAY(element))
    split = func.string_to_array(bindparam(name, packed, type_=Text()), separator, null)
    return cast(split, ARRAY(element))


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
