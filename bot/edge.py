"""What the channels' webhooks share at the edge: refusing what cannot be an update, telling
a failure a retry can fix from one it cannot, and recording the latter.

A platform delivers an update again until it gets a 2xx (Telegram for hours, WeChat a few
times). A failure that can pass (the database unreachable, busy or timing out, a pool
exhausted, the network) is answered 5xx, so the update comes back; the dialogs' receipts
make that retry safe. Any other failure (a bug, data the database refuses) would fail the
same way on every delivery, so it is answered 2xx and recorded once in ``inbound_failures``:
one bad update must not be re-delivered forever.

Texts are made storable where ``Inbound`` is made (dialogs/types.py); this module holds the
rest: the JSON depth bound, the classifier and the record.
"""

from __future__ import annotations

import hashlib
import logging
import re

import aiohttp
import redis.exceptions
import sqlalchemy.exc
import telegram.error
from prometheus_client import Counter
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from dialogs.types import storable
from storage.db import SessionFactory, transaction
from storage.models import InboundFailure
from workflow.clock import Clock

log = logging.getLogger("mashangyi.edge")
#: Updates whose handling raised: transient (the platform delivers it again), refused
#: (bad input, answered 2xx) or failed (recorded for a person to look at).
DIALOG_ERRORS = Counter(
    "mashangyi_dialog_errors_total", "Updates whose handling failed", ["channel", "kind"]
)

#: JSON nesting we parse. Telegram's deepest updates (a reply to a message with a keyboard)
#: are about ten levels; json.loads raises RecursionError near a thousand.
MAX_DEPTH = 32
#: How much of a failed update's body is kept, and of its error message.
EXCERPT_CHARS = 500
MESSAGE_CHARS = 2000
KEY_MAX = InboundFailure.__table__.c.key.type.length  # type: ignore[attr-defined]

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]++")
_INNERMOST = re.compile(rb"\[\]|\{\}")

#: Failures of the moment: the network, timeouts (asyncio's TimeoutError is an OSError),
#: the connection pool, Redis (the flood limit), the Bot API's network errors.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    OSError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    telegram.error.RetryAfter,
    aiohttp.ClientConnectionError,
)
#: PostgreSQL error classes that pass: connection, transaction rollback (serialisation,
#: deadlock), insufficient resources, operator intervention (statement timeout, shutdown),
#: system error; and "lock not available".
_TRANSIENT_SQLSTATE_CLASSES = {"08", "40", "53", "57", "58"}
_TRANSIENT_SQLSTATES = {"55P03"}
#: SQLite result codes that pass (busy or locked database, I/O, full disk, out of memory).
_TRANSIENT_SQLITE = {
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_PROTOCOL",
    "SQLITE_NOMEM",
}


class Refused(Exception):
    """An update turned away at the edge (an id no platform gives out, JSON nested too
    deep): never handled, answered 2xx, recorded."""


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON in ``body`` nests deeper than ``limit``, checked before parsing.

    Malformed JSON is not "too deep": it is left to the parser to refuse.
    """
    if body.count(b"[") + body.count(b"{") <= limit:  # every update takes this way
        return False
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    for _ in range(limit):  # each pass removes the innermost level (C speed)
        shorter = _INNERMOST.sub(b"", brackets)
        if shorter == brackets:
            return False  # empty (within the limit) or unbalanced (not JSON)
        brackets = shorter
    return bool(brackets)


def body_key(body: bytes) -> str:
    """A key for a body whose update id could not be read: the same for a re-delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def is_transient(exc: BaseException) -> bool:
    """Whether the failure can pass on a retry (then the platform should deliver again).

    Follows the chain a database driver builds (SQLAlchemy's ``orig``, ``__cause__``); the
    first link that tells wins. A bare ``OperationalError`` or ``InterfaceError`` that says
    nothing more counts as transient, as DB-API defines them (disconnects, the server;
    asyncpg's closed connections arrive so).
    """
    vague = False
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        verdict = _verdict(link)
        if verdict is not None:
            return verdict
        vague = vague or isinstance(
            link, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
        )
        link = getattr(link, "orig", None) or link.__cause__
    return vague


def _verdict(exc: BaseException) -> bool | None:
    if isinstance(exc, ValueError | TypeError):
        return False  # e.g. asyncpg's DataError: a value it cannot encode (also an InterfaceError)
    if isinstance(exc, telegram.error.NetworkError):
        return not isinstance(exc, telegram.error.BadRequest)  # BadRequest is one, too
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if getattr(exc, "connection_invalidated", False):
        return True
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(code, str) and code:
        return code[:2] in _TRANSIENT_SQLSTATE_CLASSES or code in _TRANSIENT_SQLSTATES
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str) and name:
        return "_".join(name.split("_")[:2]) in _TRANSIENT_SQLITE
    return None


async def record_failure(
    sessions: SessionFactory,
    clock: Clock,
    *,
    channel: str,
    key: str,
    error: BaseException,
    body: bytes | str = b"",
) -> None:
    """Keep one row per failed update; a re-delivery counts in ``deliveries``."""
    key = storable(key)
    key = key if len(key) <= KEY_MAX else body_key(key.encode())
    now = clock.now()
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    same = (col(InboundFailure.channel) == channel) & (col(InboundFailure.key) == key)
    for _attempt in range(2):  # two deliveries at once: one inserts, the other counts
        try:
            async with transaction(sessions) as session:
                counted = await session.exec(
                    update(InboundFailure)
                    .where(same)
                    .values(deliveries=InboundFailure.deliveries + 1, last_seen_at=now)
                )
                if counted.rowcount:
                    return
                session.add(
                    InboundFailure(
                        channel=channel,
                        key=key,
                        error="refused" if isinstance(error, Refused) else type(error).__name__,
                        message=storable(str(error))[:MESSAGE_CHARS],
                        excerpt=storable(text[: EXCERPT_CHARS * 2])[:EXCERPT_CHARS],
                        first_seen_at=now,
                        last_seen_at=now,
                    )
                )
            return
        except IntegrityError:
            continue


async def record_or_retry(
    sessions: SessionFactory,
    clock: Clock,
    *,
    channel: str,
    key: str,
    error: BaseException,
    body: bytes | str = b"",
) -> bool:
    """After handling an update failed: True when the platform should deliver it again
    (answer 5xx); False when the failure is recorded and the update answered 2xx."""
    if is_transient(error):
        DIALOG_ERRORS.labels(channel, "transient").inc()
        log.warning("%s: update %s failed, to be delivered again: %r", channel, key[:80], error)
        return True
    if isinstance(error, Refused):
        DIALOG_ERRORS.labels(channel, "refused").inc()
        log.warning("%s: refused update %s: %s", channel, key[:80], error)
    else:
        DIALOG_ERRORS.labels(channel, "failed").inc()
        log.error("%s: update %s failed for good", channel, key[:80], exc_info=error)
    try:
        await record_failure(sessions, clock, channel=channel, key=key, error=error, body=body)
    except Exception as again:
        if is_transient(again):  # the record can wait for the re-delivery
            log.warning("%s: could not record update %s: %r", channel, key[:80], again)
            return True
        log.exception("%s: could not record update %s", channel, key[:80])
    return False
