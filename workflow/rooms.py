"""The room tree: ancestry, the nearest common parent, and importing rooms from CSV."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import literal
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import select_columns
from storage.models import Room

#: Room levels, top to bottom. Towns, streets and parks share a tier, as do villages,
#: communities and enterprises; member homes and sectors hang where a city puts them.
LEVELS = (
    "city", "district", "town", "street", "park", "village", "community", "enterprise",
    "members_home", "sector",
)  # fmt: skip
CSV_HEADER = ("code", "name", "level", "parent_code")
#: Codes travel in QR scene strings and Telegram deep links ("r_<code>", ≤ 64 characters).
ROOM_CODE = re.compile(r"[A-Za-z0-9_-]{1,40}")
#: More levels than any real hierarchy (city → district → town → village → sector).
MAX_DEPTH = 32


async def room_chain(session: AsyncSession, room_id: int) -> list[Room]:
    """The room followed by its ancestors, nearest first (one recursive query)."""
    rooms = Room.__table__
    chain = (
        select(rooms.c.id, rooms.c.parent_id, literal(0).label("depth"))
        .where(rooms.c.id == room_id)
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        select(rooms.c.id, rooms.c.parent_id, chain.c.depth + 1)
        .join(chain, rooms.c.id == chain.c.parent_id)
        .where(chain.c.depth < MAX_DEPTH)  # imports refuse cycles; this bounds a broken table
    )
    found = await session.exec(
        select(Room).join(chain, col(Room.id) == chain.c.id).order_by(chain.c.depth)
    )
    once: dict[int | None, Room] = {}  # each room once, even in a table with a cycle
    for room in found:
        once.setdefault(room.id, room)
    return list(once.values())


def nearest_common_ancestor(a: Sequence[Room], b: Sequence[Room]) -> Room | None:
    """The lowest room on both chains (each chain: room first, then its ancestors)."""
    ids_b = {room.id for room in b}
    return next((room for room in a if room.id in ids_b), None)


async def get_room(session: AsyncSession, code: str) -> Room | None:
    return (await session.exec(select(Room).where(Room.code == code))).first()


async def nearby_rooms(session: AsyncSession, room_id: int, limit: int = 8) -> list[Room]:
    """Where a topic is most likely transferred: the room's siblings, then its parent."""
    room = await session.get(Room, room_id)
    if room is None or room.parent_id is None:
        return []
    siblings = await session.exec(
        select(Room)
        .where(Room.parent_id == room.parent_id, Room.id != room.id)
        .order_by(Room.code)
        .limit(limit)
    )
    parent = await session.get(Room, room.parent_id)
    return [*siblings, *([parent] if parent else [])][:limit]


def number_prefix(chain: Sequence[Room]) -> str:
    """Topic numbers carry the district's code (QJP-2026-000123); else the top room's."""
    district = next((room for room in chain if room.level == "district"), None)
    return (district or chain[-1]).code


class RoomImportError(ValueError):
    """A problem in a rooms file; ``line`` is 1-based, counting the header."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True)
class RoomRow:
    line: int
    code: str
    name: str
    level: str
    parent_code: str


def parse_rooms_csv(data: bytes) -> list[RoomRow]:
    """Rows of a UTF-8 CSV (BOM or not) with header ``code,name,level,parent_code``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RoomImportError(None, f"not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RoomImportError(1, f"malformed CSV: {exc}") from None
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise RoomImportError(1, "header must be exactly: " + ",".join(CSV_HEADER))
    rows: list[RoomRow] = []
    seen: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            if not any(field.strip() for field in record):
                continue
            if len(record) != len(CSV_HEADER):
                raise RoomImportError(
                    line, f"expected {len(CSV_HEADER)} fields, found {len(record)}"
                )
            code, name, level, parent_code = (field.strip() for field in record)
            if not code or not name:
                raise RoomImportError(line, "code and name must not be empty")
            if not ROOM_CODE.fullmatch(code):
                raise RoomImportError(
                    line, f"room code {code!r} may only use A-Z, a-z, 0-9, _ and - (at most 40)"
                )
            if len(name) > 100:
                raise RoomImportError(line, "a room name is at most 100 characters")
            if level not in LEVELS:
                raise RoomImportError(
                    line, f"unknown level {level!r}; use one of: {', '.join(LEVELS)}"
                )
            if code in seen:
                raise RoomImportError(line, f"duplicate code {code!r} (first on line {seen[code]})")
            if parent_code == code:
                raise RoomImportError(line, f"room {code!r} cannot be its own parent")
            seen[code] = line
            rows.append(RoomRow(line, code, name, level, parent_code))
    except csv.Error as exc:
        raise RoomImportError(reader.line_num, f"malformed CSV: {exc}") from None
    return rows


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int


async def import_rooms(
    session: AsyncSession, rows: Iterable[RoomRow], now: datetime
) -> ImportResult:
    """Create or update rooms by code, inside the caller's transaction.

    Everything is checked before anything is written: an unknown parent or a cycle (also
    one formed together with rooms already stored) raises ``RoomImportError`` and the
    caller's rollback leaves the database as it was.
    """
    rows = list(rows)
    existing = {room.code: room for room in (await session.exec(select(Room))).all()}
    by_id = {room.id: room for room in existing.values()}
    parent_of: dict[str, str | None] = {
        code: by_id[room.parent_id].code if room.parent_id in by_id else None
        for code, room in existing.items()
    }
    for row in rows:
        if (
            row.parent_code
            and row.parent_code not in existing
            and row.parent_code not in {r.code for r in rows}
        ):
            raise RoomImportError(row.line, f"unknown parent room {row.parent_code!r}")
        parent_of[row.code] = row.parent_code or None
    for row in rows:
        _check_no_cycle(row, parent_of)

    new_codes = {row.code for row in rows if row.code not in existing}
    for code in new_codes:  # create first, so every parent has an id
        existing[code] = Room(code=code, name="", level="", created_at=now, updated_at=now)
        session.add(existing[code])
    await session.flush()
    updated = 0
    for row in rows:
        room = existing[row.code]
        wanted = (row.name, row.level, existing[row.parent_code].id if row.parent_code else None)
        if (room.name, room.level, room.parent_id) != wanted:
            room.name, room.level, room.parent_id = wanted
            room.updated_at = now
            updated += row.code not in new_codes
    await session.flush()
    return ImportResult(
        created=len(new_codes), updated=updated, unchanged=len(rows) - len(new_codes) - updated
    )


def _check_no_cycle(row: RoomRow, parent_of: dict[str, str | None]) -> None:
    """Raise if following parents from ``row`` comes back to it. A row that merely leads
    into a cycle is left alone: the cycle is reported at a row that is part of it."""
    seen = [row.code]
    code = parent_of.get(row.code)
    while code is not None and code not in seen:
        seen.append(code)
        code = parent_of.get(code)
    if code == row.code:
        path = " → ".join([*seen, code])
        raise RoomImportError(row.line, f"room tree would have a cycle: {path}")


# -- the whole tree in memory (sweeps and listings) ------------------------------------------


@dataclass(frozen=True)
class RoomInfo:
    id: int
    code: str
    name: str
    level: str
    parent_id: int | None


class RoomTree:
    """All rooms in memory (a city has a few thousand): chains and subtrees without queries."""

    def __init__(self, rooms: Iterable[RoomInfo]) -> None:
        self.rooms = {room.id: room for room in rooms}
        self._by_code = {room.code: room for room in self.rooms.values()}
        self._children: dict[int | None, list[int]] = {}
        for room in self.rooms.values():
            self._children.setdefault(room.parent_id, []).append(room.id)

    @classmethod
    async def load(cls, session: AsyncSession) -> RoomTree:
        rows = await session.exec(
            select_columns(Room.id, Room.code, Room.name, Room.level, Room.parent_id)
        )
        return cls(RoomInfo(*row) for row in rows)

    def __getitem__(self, room_id: int) -> RoomInfo:
        return self.rooms[room_id]

    def by_code(self, code: str) -> RoomInfo | None:
        return self._by_code.get(code)

    def chain(self, room_id: int) -> list[RoomInfo]:
        """The room followed by its ancestors, nearest first (a cycle cannot loop forever)."""
        chain: list[RoomInfo] = []
        next_id: int | None = room_id
        while next_id is not None and next_id in self.rooms and len(chain) <= len(self.rooms):
            chain.append(self.rooms[next_id])
            next_id = self.rooms[next_id].parent_id
        return chain

    def subtree(self, room_id: int) -> set[int]:
        """The room and every room below it."""
        found, todo = set(), [room_id]
        while todo:
            current = todo.pop()
            if current not in found:
                found.add(current)
                todo.extend(self._children.get(current, ()))
        return found
