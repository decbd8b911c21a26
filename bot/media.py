"""Photos and recordings: downloaded from the platform soon after they arrive (WeChat's
temporary media expire after three days), off the request path, checked (``admit``: by
their bytes, against what each kind may be) and kept in the media store."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mimetypes
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_
from sqlmodel import col, select, update

from bot.media_store import MediaStore, Refused, admit
from storage.db import SessionFactory, transaction
from storage.models import Attachment
from workflow.clock import Clock

log = logging.getLogger("mashangyi.media")
#: 1, 2, 4, 8 minutes between tries; WeChat keeps temporary media for three days.
RETRY_BASE = timedelta(minutes=1)
#: When the store itself fails (a full disk, the bucket unreachable), the platform was not
#: at fault: try again this much later without counting it, until WeChat's three days end.
STORE_RETRY = timedelta(minutes=5)
STORE_GIVES_UP = timedelta(days=3)


class MediaFetcher(Protocol):
    async def fetch(self, ref: str) -> tuple[bytes, str]:
        """The media's bytes and content type; raises on failure."""
        ...


class MediaTooLarge(Exception):
    pass


class MediaDownloader:
    """Claims pending attachments of channels it can fetch from and stores them."""

    def __init__(
        self,
        sessions: SessionFactory,
        fetchers: dict[str, MediaFetcher],
        store: MediaStore,
        clock: Clock,
        *,
        max_bytes: int,
        max_attempts: int = 5,
        batch_size: int = 10,
    ) -> None:
        self.sessions, self.fetchers, self.store, self.clock = sessions, fetchers, store, clock
        self.max_bytes, self.max_attempts, self.batch_size = max_bytes, max_attempts, batch_size

    async def run_forever(self, stop: asyncio.Event, idle_seconds: float = 2.0) -> None:
        """Download until ``stop``; rest ``idle_seconds`` when nothing was stored."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:  # keep downloading after a database hiccup
                log.exception("media: download round failed")
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=idle_seconds)

    async def run_once(self) -> int:
        """Try the due downloads once; returns how many were stored."""
        due = or_(
            col(Attachment.not_before).is_(None), col(Attachment.not_before) <= self.clock.now()
        )
        async with self.sessions() as session:
            pending = (
                await session.exec(
                    select(Attachment)
                    .where(
                        Attachment.status == "pending",
                        col(Attachment.channel).in_(list(self.fetchers)),
                        due,
                    )
                    .order_by(col(Attachment.id))
                    .limit(self.batch_size)
                )
            ).all()
        stored = 0
        for row in pending:
            stored += await self._download(row)
        return stored

    async def _download(self, row: Attachment) -> bool:
        try:
            data, content_type = await self.fetchers[row.channel].fetch(row.source_ref)
            if len(data) > self.max_bytes:
                raise MediaTooLarge(f"{len(data)} bytes > {self.max_bytes}")
            kept = admit(row.kind, data, content_type or row.content_type)
        except Exception as exc:  # any failure: count it, keep the row, try again later
            log.warning("media %s: download failed: %s", row.id, exc)
            attempts = row.attempts + 1
            permanent = isinstance(exc, (MediaTooLarge, Refused))
            await self._update(
                row,
                status="failed" if permanent or attempts >= self.max_attempts else "pending",
                attempts=attempts,
                not_before=self.clock.now() + RETRY_BASE * 2 ** (attempts - 1),
                last_error=f"{type(exc).__name__}: {exc}"[:500],
            )
            return False
        digest = hashlib.sha256(data).hexdigest()
        key = _key(row, digest, kept.content_type, self.clock.now())
        try:
            await self.store.put(key, data, kept.content_type)
        except Exception as exc:  # our side: a full disk, the bucket away
            log.error("media %s: cannot store %s: %s", row.id, key, exc)
            now = self.clock.now()
            await self._update(
                row,
                status="failed" if now - row.created_at > STORE_GIVES_UP else "pending",
                not_before=now + STORE_RETRY,
                last_error=f"store: {type(exc).__name__}: {exc}"[:500],
            )
            return False
        await self._update(
            row,
            status="stored",
            storage_key=key,
            sha256=digest,
            size_bytes=len(data),
            content_type=kept.content_type,
            attempts=row.attempts + 1,
            last_error=None,
        )
        return True

    async def _update(self, row: Attachment, **values: object) -> None:
        async with transaction(self.sessions) as session:
            await session.exec(
                update(Attachment)
                .where(col(Attachment.id) == row.id, col(Attachment.status) == "pending")
                .values(**values)
            )


def _key(row: Attachment, digest: str, content_type: str, now: datetime) -> str:
    extension = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ".bin"
    return f"{now:%Y/%m}/{row.id}-{digest[:16]}{extension}"
