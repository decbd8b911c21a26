"""Messages kept before they were handled, and handling them later, in order.

WeChat gives a passive reply 5 seconds. A message whose step has not finished by then may
be acknowledged only once it is durably kept: ``keep`` writes its receipt row as
``queued``, carrying the message (or, when the database cannot take even that, the webhook
appends it to the local spool, storage/spool.py, and ``import_spool`` queues it later).
Its step usually still finishes a moment later (the receipt turns ``done`` and the replies
go through the outbox, dialogs/router.py); if the step failed, or the process stopped,
``Inbox.drain_once`` handles it later — oldest first, and a person's newer messages wait
behind their older ones.

A kept message that cannot be handled after ``MAX_ATTEMPTS`` tries (a failure a retry
cannot fix) is marked ``failed`` with the reason, so it never blocks that person's later
messages; a failure that may pass (the database unreachable) is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dialogs.types import Button, Inbound, Location, Media, Reply
from storage.db import SessionFactory, transaction
from storage.models import InboundReceipt
from storage.spool import Spool
from storage.sql import insert_for

if TYPE_CHECKING:
    from dialogs.router import Dialogs

log = logging.getLogger(__name__)

_receipt = InboundReceipt.__table__
_c = _receipt.c
MAX_ATTEMPTS = 5
#: Spooled messages moved into the database per transaction.
IMPORT_CHUNK = 50
_MAX_REASON = 500


@dataclass(frozen=True)
class Receipt:
    """What is known of a message: ``queued`` (kept, to be handled), ``done`` or ``failed``."""

    status: str
    #: The replies as stored (``text``, ``buttons``).
    bodies: list[dict[str, Any]]
    #: Set when it was acknowledged before it was handled: its replies went by the outbox.
    queued_at: datetime | None

    @property
    def replies(self) -> list[Reply]:
        return [
            Reply(r["text"], tuple(Button(label, payload) for label, payload in r["buttons"]))
            for r in self.bodies
        ]


def to_json(inbound: Inbound) -> dict[str, Any]:
    return asdict(inbound)


def from_json(data: dict[str, Any]) -> Inbound:
    media, location = data.get("media"), data.get("location")
    return Inbound(
        **{k: v for k, v in data.items() if k not in {"media", "location"}},
        media=Media(**media) if media else None,
        location=Location(**location) if location else None,
    )


async def keep_in_queue(conn: AsyncConnection, inbound: Inbound, now: datetime) -> Receipt:
    """Write the message's receipt as ``queued`` in the caller's transaction, unless it has
    one already; the receipt as it now is."""
    statement = (
        insert_for(conn, _receipt)
        .values(
            channel=inbound.channel,
            key=inbound.message_id,
            replies=[],
            at=now,
            status="queued",
            user_ref=inbound.user_ref,
            inbound=to_json(inbound),
            queued_at=now,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["channel", "key"])
        .returning(_c.id)
    )
    if (await conn.execute(statement)).first() is not None:
        return Receipt("queued", [], now)
    found = await read_receipt(conn, inbound)
    assert found is not None  # it conflicted: it exists
    return found


async def keep(sessions: SessionFactory, inbound: Inbound, now: datetime) -> Receipt:
    """``keep_in_queue`` in a transaction of its own, committed when this returns."""
    async with transaction(sessions) as session:
        return await keep_in_queue(await session.connection(), inbound, now)


async def read_receipt(conn: AsyncConnection, inbound: Inbound) -> Receipt | None:
    row = (
        await conn.execute(
            select(_c.status, _c.replies, _c.queued_at).where(
                _c.channel == inbound.channel, _c.key == inbound.message_id
            )
        )
    ).first()
    return None if row is None else Receipt(row.status, row.replies, row.queued_at)


def spool_record(inbound: Inbound, now: datetime) -> dict[str, Any]:
    """A message as kept in the spool (storage/spool.py) while the database is away."""
    return {"inbound": to_json(inbound), "queued_at": now.isoformat()}


class Inbox:
    """Handles kept messages; run by the process that runs the background loops."""

    def __init__(
        self,
        sessions: SessionFactory,
        dialogs: Dialogs,
        is_transient: Callable[[BaseException], bool],
        spool: Spool | None = None,
        batch_size: int = 100,
    ) -> None:
        self.sessions, self.dialogs = sessions, dialogs
        self.is_transient = is_transient
        self.spool = spool
        self.batch_size = batch_size

    async def import_spool(self) -> int:
        """Move messages kept on disk while the database was away into the queue; how many.

        A spooled message that has a receipt already was handled (by its own step, which
        then sent its replies through the outbox, or by a re-delivery, which answered it):
        nothing more is done for it.
        """
        if self.spool is None:
            return 0
        moved = 0
        for path in self.spool.take():
            records = self.spool.read(path)
            for start in range(0, len(records), IMPORT_CHUNK):
                moved += await self._import(records[start : start + IMPORT_CHUNK])
            self.spool.done(path)
        return moved

    async def _import(self, records: list[dict[str, Any]]) -> int:
        # Small transactions: on SQLite a long one would hold the only write lock.
        async with transaction(self.sessions) as session:
            conn = await session.connection()
            for record in records:
                inbound = from_json(record["inbound"])
                await keep_in_queue(conn, inbound, datetime.fromisoformat(record["queued_at"]))
        return len(records)

    async def run_forever(self, stop: asyncio.Event, idle_seconds: float = 1.0) -> None:
        """Drain until ``stop`` is set; rest ``idle_seconds`` when nothing was waiting."""
        while not stop.is_set():
            try:
                handled = await self.drain_once()
            except Exception:
                log.warning("inbox: a drain round failed", exc_info=True)
                handled = 0
            if handled == 0 and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=idle_seconds)

    async def drain_once(self) -> int:
        """Handle the kept messages waiting now, oldest first; how many were handled."""
        await self.import_spool()
        async with self.sessions() as session:
            rows = (
                await session.exec(  # type: ignore[call-overload]  # stubs: sqlmodel selects only
                    select(_c.id, _c.inbound, _c.queued_at, _c.attempts)
                    .where(_c.status == "queued")
                    .order_by(_c.queued_at, _c.id)
                    .limit(self.batch_size)
                )
            ).all()
        handled = 0
        for row in rows:
            try:
                inbound = from_json(row.inbound)
                result = await self.dialogs.process(inbound, queued_at=row.queued_at)
            except Exception as exc:
                await self._failed(row.id, row.attempts, exc)
                if self.is_transient(exc):
                    break  # the database is struggling: try again next round
                continue
            handled += 1 if result.replies else 0  # none: it waits behind an older one
        return handled

    async def _failed(self, row_id: int, attempts: int, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON]
        transient = self.is_transient(exc)
        log.warning("inbox: a kept message failed (%s)", reason, exc_info=not transient)
        if transient:
            return
        values: dict[str, Any] = {"attempts": attempts + 1, "last_error": reason}
        if attempts + 1 >= MAX_ATTEMPTS:
            values["status"] = "failed"
        try:
            async with transaction(self.sessions) as session:
                await session.exec(
                    update(_receipt).where(_c.id == row_id, _c.status == "queued").values(**values)
                )
        except Exception:
            log.warning("inbox: could not record the failure", exc_info=True)
