"""Many rows in one statement: ``INSERT … ON CONFLICT DO NOTHING [RETURNING …]``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Insert, Row, Table, Text, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.sql import array_of, dialect, insert_for

#: One encoder for all rows: ``json.dumps`` with an option builds a new encoder per call,
#: which costs more than encoding a short message body.
_encode_json = json.JSONEncoder(ensure_ascii=False).encode


async def insert_many(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> list[Row[*tuple[Any, ...]]]:
    """Insert ``rows`` (all with the same keys) in the caller's transaction, skipping those
    that conflict on the unique columns ``conflict``; with ``returning``, the listed columns
    of the rows actually inserted.

    PostgreSQL: one statement whatever the number of rows, each column sent as one array
    and unnested in order — one round trip and one plan, three to four times faster than
    batched executemany for ten thousand rows (bench/README.md). SQLite: executemany.
    """
    if not rows:
        return []
    names = list(rows[0])
    insert = insert_for(session, table)
    if dialect(session) != "postgresql":
        statement: Insert = insert.on_conflict_do_nothing(index_elements=list(conflict))
        if returning:
            statement = statement.returning(*(table.c[name] for name in returning))
        result = await session.exec(statement, params=list(rows))
        return list(result) if returning else []

    # A column with one value for every row (kind, status, timestamps) goes as one scalar;
    # the others as one array each, unnested side by side.
    columns = {name: [row[name] for row in rows] for name in names}
    varying = [n for n in names if columns[n].count(columns[n][0]) != len(rows)] or names[:1]
    arrays = []
    for name in varying:
        column_type, values = table.c[name].type, columns[name]
        if isinstance(column_type, JSON):  # sent as text, cast back to JSONB in SQL
            values = [None if v is None else _encode_json(v) for v in values]
            column_type = Text()
        arrays.append(array_of(f"bulk_{name}", values, column_type))
    source = func.unnest(*arrays).table_valued(*varying).render_derived(name="bulk")
    selected: list[Any] = []
    for name in names:
        if name not in varying:
            selected.append(bindparam(f"one_{name}", columns[name][0], type_=table.c[name].type))
        elif isinstance(table.c[name].type, JSON):
            selected.append(cast(source.c[name], JSONB))
        else:
            selected.append(source.c[name])
    statement = insert.from_select(names, select(*selected)).on_conflict_do_nothing(
        index_elements=list(conflict)
    )
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
    result = await session.exec(statement)
    return list(result) if returning else []
