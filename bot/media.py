"""Photos and recordings: downloaded from the platform soon after they arrive (WeChat's
temporary media expire after three days), off the request path, and kept in a store."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mimetypes
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import or_
from sqlmodel import col, select, update

from storage.db import SessionFactory, transaction
from storage.models import Attachment
from workflow.clock import Clock

log = logging.getLogger("mashangyi.media")
#: 1, 2, 4, 8 minutes between tries; WeChat keeps temporary media for three days.
RETRY_BASE = timedelta(minutes=1)


class MediaFetcher(Protocol):
    async def fetch(self, ref: str) -> tuple[bytes, str]:
        """The media's bytes and content type; raises on failure."""
        ...


class MediaTooLarge(Exception):
    pass


class LocalMediaStore:
    """Files under one directory; keys are relative paths. Swap for object storage later."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        await asyncio.to_thread(_write, path, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread((self.root / key).read_bytes)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(path)  # never a half-written file under the real name


class MediaDownloader:
    """Claims pending attachments of channels it can fetch from and stores them."""

    def __init__(
        self,
        sessions: SessionFactory,
        fetchers: dict[str, MediaFetcher],
        store: LocalMediaStore,
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
            digest = hashlib.sha256(data).hexdigest()
            key = _key(row, digest, content_type or row.content_type, self.clock.now())
            await self.store.put(key, data)
        except Exception as exc:  # any failure: count it, keep the row, try again later
            log.warning("media %s: download failed: %s", row.id, exc)
            attempts = row.attempts + 1
            failed = attempts >= self.max_attempts or isinstance(exc, MediaTooLarge)
            await self._update(
                row,
                status="failed" if failed else "pending",
                attempts=attempts,
                not_before=self.clock.now() + RETRY_BASE * 2 ** (attempts - 1),
                last_error=f"{type(exc).__name__}: {exc}"[:500],
            )
            return False
        await self._update(
            row,
            status="stored",
            storage_key=key,
            sha256=digest,
            size_bytes=len(data),
            content_type=content_type or row.content_type,
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
