"""The audit log: one append-only row for every change of who may do what, and for every
refusal worth a look (a used, expired, revoked or forged invite; a validly signed review
link refused). Topic changes have their own trail (``topic_events``).

A refusal anyone can cause at will (a signature we never made) is no row: it would let
anyone write rows. It is a log line through ``LimitedLog``, so it cannot flood the log
either."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import AuditEntry
from workflow.clock import Clock


async def record(
    session: AsyncSession,
    action: str,
    *,
    at: datetime,
    actor_id: int | None = None,
    **subject: Any,
) -> AuditEntry:
    """Add one row in the caller's transaction. ``subject`` must hold no secret."""
    entry = AuditEntry(actor_id=actor_id, action=action, subject=subject, at=at)
    session.add(entry)
    await session.flush()
    return entry


class LimitedLog:
    """At most ``limit`` lines per ``window`` (on the injected clock); the lines left out
    are counted in one line when the next window starts."""

    def __init__(
        self,
        logger: logging.Logger,
        clock: Clock,
        *,
        limit: int = 10,
        window: timedelta = timedelta(minutes=1),
        level: int = logging.WARNING,
    ) -> None:
        self.logger, self.clock, self.level = logger, clock, level
        self.limit, self.window = limit, window
        self._started: datetime | None = None
        self._logged = self._left_out = 0

    def log(self, message: str, *args: object) -> None:
        now = self.clock.now()
        if self._started is None or now - self._started >= self.window:
            if self._left_out:
                self.logger.log(
                    self.level, "%d more like this left out since %s", self._left_out, self._started
                )
            self._started, self._logged, self._left_out = now, 0, 0
        if self._logged < self.limit:
            self._logged += 1
            self.logger.log(self.level, message, *args)
        else:
            self._left_out += 1
