"""The audit log: one append-only row for every change of who may do what, and for every
refusal worth a look (a used, expired, revoked or forged invite). Topic changes have their
own trail (``topic_events``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import AuditEntry


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
