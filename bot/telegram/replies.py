"""A turn's replies on the webhook: written to the outbox in the dialog's transaction, held
for this process, sent by it right after the update is answered, and each send recorded.

Held rows are kept from the delivery loop for ``REPLY_HOLD``, so a reply that fails (429,
5xx, timeout) is delivered later by the outbox, and a re-delivered update (Telegram retries
when our 200 got lost) does not send its replies a second time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text as sql_text
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Bot
from telegram.error import TelegramError

from bot.edge import is_transient
from bot.logs import pseudonym
from bot.services import Services
from bot.telegram.client import CHANNEL
from bot.telegram.sender import delivery_failure, send_reply
from dialogs.types import Reply
from notices.message import OutboundMessage
from notices.outbox import (
    RECORD_MARGIN,
    RECORD_RETRY,
    PermanentFailure,
    TemporaryFailure,
    enqueue,
    retry_while_away,
)
from storage.db import transaction
from storage.models import UNSENT, OutboxMessage

log = logging.getLogger("mashangyi.telegram")

#: How long an immediate reply's outbox row is kept from the delivery loop while the webhook
#: sends it itself. Longer than PTB's request timeouts, so both never send the same row.
REPLY_HOLD = timedelta(minutes=2)
#: A chat with this many messages waiting or fewer (a card or notice the same turn wrote,
#: as a rule) is caught up by the webhook before its replies; more is a backlog, which the
#: paced delivery loop drains, the replies behind it.
CATCH_UP = 3


@dataclass
class Batch:
    """A turn's replies as written to the outbox, for ``HeldReplies.send``."""

    chat_id: int
    hold: datetime  # the held rows' claimed_until
    fresh: list[tuple[str, Reply]]  # rows this delivery wrote (key, reply), in order
    waiting: int  # the chat's older unsent rows (up to CATCH_UP + 1)
    backlog: bool  # one of those has failed before


class HeldReplies:
    """The webhook's held replies: ``write`` them in the dialog's transaction, ``send`` them
    once the update is answered."""

    def __init__(self, services: Services) -> None:
        self.services = services
        #: Results of sends still to be recorded (the database was away at the time).
        self._recording: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        for task in self._recording:  # what they did not record is sent again after the hold
            task.cancel()
        if self._recording:
            log.warning("telegram: %d sends not recorded at shutdown", len(self._recording))
            await asyncio.wait(self._recording)

    async def release(self, batch: Batch) -> None:
        """Hand the batch's held rows to the outbox, due now (they queue behind the chat's
        older rows there)."""
        keys = [key for key, _ in batch.fresh]
        await self._settle(keys, batch.hold, **_released(self.services.clock.now()))

    async def write(
        self,
        session: AsyncSession,
        update_id: int,
        chat_id: int,
        replies: Sequence[Reply],
        tag: str,
    ) -> Batch:
        """Write the replies as outbox rows in the caller's transaction.

        ``tag`` names them in their keys: a refusal ("refused") must not take the keys of
        the replies a later delivery of the same update, handled, will send.

        Each row is held (``sending``, by this process's worker identity) for ``send``, which
        sends it and records the send right after the Bot API accepts it. When the chat still
        has older messages waiting (a reply that failed, a notice not yet delivered), the
        rows are not held but queued behind them: sent at once they would overtake them.
        """
        clock = self.services.clock
        address = str(chat_id)
        hold = clock.now() + REPLY_HOLD
        waiting, backlog = await _unsent(session, address, CATCH_UP + 1, self.services.worker_id)
        fresh: list[tuple[str, Reply]] = []
        for number, reply in enumerate(replies):
            key = f"{CHANNEL}:{tag}:{update_id}:{number}"
            if await enqueue(
                session,
                key=key,
                channel=CHANNEL,
                address=address,
                kind="reply",
                message=OutboundMessage.of(reply),
                now=clock.now(),
                held_until=None if waiting else hold,
                held_by=self.services.worker_id,
            ):
                fresh.append((key, reply))
        return Batch(chat_id, hold, fresh, waiting, backlog)

    async def send(self, bot: Bot, batch: Batch) -> bool:
        """Send held rows in order and record each; False when some were left to the
        outbox (queued behind older rows, or a send failed)."""
        clock = self.services.clock
        address, hold, fresh = str(batch.chat_id), batch.hold, batch.fresh
        if batch.waiting:
            # Catching up is for a turn's own few notices (a new card to the same chat); a
            # backlog left by failures drains through the outbox, one a second.
            if fresh and batch.waiting <= CATCH_UP and not batch.backlog:
                await self._catch_up(address, batch.waiting + len(fresh))
            elif fresh:
                log.info(
                    "telegram: chat %s has a backlog; replies queued behind it", pseudonym(address)
                )
            return False
        # Rows that already existed were sent (or are being sent) by an earlier delivery of
        # this same update: not sending them again is what makes a re-delivery harmless.
        for number, (key, reply) in enumerate(fresh):
            try:
                await send_reply(bot, batch.chat_id, reply)
            except TelegramError as exc:
                failure = delivery_failure(exc)
                if isinstance(failure, PermanentFailure):
                    log.warning("telegram: reply %s refused: %s", key, failure.reason)
                    await self._settle(
                        [key], hold, status="dead", attempts=1, last_error=failure.reason[:500]
                    )
                    continue
                wait = failure.retry_after if isinstance(failure, TemporaryFailure) else None
                log.warning("telegram: reply %s left to the outbox: %s", key, failure.reason)
                await self._settle(
                    [key],
                    hold,
                    **_released(clock.now() + (wait or timedelta(0))),
                    # As in the outbox: a wait the platform asked for is not a failed attempt.
                    attempts=0 if wait is not None else 1,
                    last_error=failure.reason[:500],
                )
                # The later replies queue behind it (the outbox keeps a chat's order).
                later = [k for k, _ in fresh[number + 1 :]]
                await self._settle(later, hold, **_released(clock.now()))
                return False
            await self._settle([key], hold, status="sent", sent_at=clock.now(), claimed_until=None)
        return True

    async def _catch_up(self, address: str, rows: int) -> None:
        """Deliver the chat's few waiting messages, then these replies, in order, now: through
        the outbox (one row per round, each claimed and recorded), not paced (a turn's
        messages go out together, as always). Stops at the first row that is not due
        (failed, or held by another process): the delivery loop takes it from there."""
        try:
            await self.services.dispatcher(
                channels=[CHANNEL], addresses=[address], paced=False
            ).drain(max_rounds=rows)
        except Exception:  # the rows are safe in the outbox; the delivery loop sends them
            log.warning(
                "telegram: catching up on chat %s failed", pseudonym(address), exc_info=True
            )

    async def _settle(self, keys: list[str], hold: datetime, **values: Any) -> None:
        """Record what happened to held rows, unless the delivery loop has taken them (their
        hold ran out, or a restart released them: then ``claimed_until`` is no longer ours).

        Runs on the services' own small pool for results (``records``): a reply sent but not
        recorded is sent again later, so nothing here may wait behind the dialogs' work.
        When the database is away, the record is retried in the background until the hold
        runs out; the update is answered meanwhile (its replies went, or wait in the outbox).
        """
        if not keys:
            return
        try:
            await self._record(keys, hold, values)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("telegram: %s not recorded yet (%r); retrying", keys, exc)
            task = asyncio.ensure_future(self._record_until(keys, hold, values))
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)

    async def _record_until(self, keys: list[str], hold: datetime, values: dict[str, Any]) -> None:
        await asyncio.sleep(RECORD_RETRY)
        try:
            await retry_while_away(
                lambda: self._record(keys, hold, values),
                (REPLY_HOLD - RECORD_MARGIN).total_seconds(),
                is_transient,
                what=keys,
            )
        except Exception:
            log.error("telegram: %s never recorded; the outbox sends them again", keys)

    async def _record(self, keys: list[str], hold: datetime, values: dict[str, Any]) -> None:
        async with transaction(self.services.records) as session:
            await session.exec(
                update(OutboxMessage)
                .where(
                    col(OutboxMessage.idempotency_key).in_(keys),
                    col(OutboxMessage.status) == "sending",
                    col(OutboxMessage.claimed_until) == hold,
                )
                .values(**values)
            )


def _released(due: datetime) -> dict[str, Any]:
    """A held row handed to the outbox, due at ``due``."""
    return {"status": "pending", "not_before": due, "claimed_until": None, "claimed_by": None}


async def _unsent(
    session: AsyncSession, address: str, limit: int, mine: str | None
) -> tuple[int, bool]:
    """How many messages to a Telegram chat are neither sent nor given up, counting up to
    ``limit`` (a probe of the partial index ix_outbox_unsent_chat), and whether one of them
    has failed before (a backlog, not a turn's own notices). Rows held by ``mine`` (this
    process's turns in flight) are not counted: those turns send in order, one after
    another (``TelegramChannel._finish``)."""
    found = await session.exec(
        select(OutboxMessage.last_error, OutboxMessage.status, OutboxMessage.claimed_by)
        .where(
            col(OutboxMessage.channel) == CHANNEL,
            col(OutboxMessage.address) == address,
            sql_text(f"outbox_messages.{UNSENT}"),
        )
        .limit(limit)
    )
    rows = [
        (error, status, holder)
        for error, status, holder in found.all()
        if not (status == "sending" and holder == mine)
    ]
    return len(rows), any(error is not None for error, _, _ in rows)
