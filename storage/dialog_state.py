"""The dialog-state store: who wrote and where they are in a dialog, read and written by
the statements every inbound message runs.

Every message reads its sender and dialog state and writes the new state and a receipt.
These few statements are SQLAlchemy Core, built once at import: on the WeChat benchmark the
ORM's per-object bookkeeping (statement coercion, identity map, unit-of-work flush) was most
of a dialog step's CPU time. Everything else a step does stays ORM.

Known sender (the usual case): one query, the dialog-state row locked (``FOR UPDATE``; on
PostgreSQL this serializes one person's messages across processes). First contact: the
person, their chat identity and the state are created.

The message comes as anything with an ``Inbound``'s addressing fields (``Message``):
storage knows nothing of the dialogs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import ChannelIdentity, DialogState, InboundReceipt, Person
from storage.sql import DIALECTS, dialect, insert_for

_state = DialogState.__table__
_identity = ChannelIdentity.__table__
_person = Person.__table__
_receipt = InboundReceipt.__table__

#: A WeChat customer-service window is 48 h; its start to the minute is plenty.
INBOUND_RESOLUTION = timedelta(minutes=1)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


class Message(Protocol):
    """What the store reads of an inbound message (dialogs.types.Inbound)."""

    @property
    def channel(self) -> str: ...
    @property
    def user_ref(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def display_name(self) -> str: ...


@dataclass
class Speaker:
    """The person a message is from."""

    id: int
    display_name: str


@dataclass
class State:
    """A chat identity's place in a dialog (a row of ``dialog_states``, or a new one)."""

    flow: str
    step: str
    data: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    id: int | None = None  # None until first saved


class Duplicate(Exception):
    """This message was handled before (its receipt is ``done``): roll back its second run."""


#: An older message of the same person, kept but not handled yet (the inbox): this
#: one must wait behind it. ``before``: this message's own queued time, or the far future.
_BACKLOG = exists().where(
    _receipt.c.channel == bindparam("channel"),
    _receipt.c.user_ref == bindparam("external_id"),
    _receipt.c.status == "queued",
    _receipt.c.key != bindparam("key"),
    _receipt.c.queued_at < bindparam("before"),
)


_KNOWN = (
    select(
        _identity.c.id,
        _identity.c.last_inbound_at,
        _identity.c.unreachable_at,
        _person.c.id.label("person_id"),
        _person.c.display_name,
        _state.c.id.label("state_id"),
        _state.c.flow,
        _state.c.step,
        _state.c.data,
        _state.c.expires_at,
        _BACKLOG.label("backlog"),
    )
    .select_from(
        _identity.join(_person, _person.c.id == _identity.c.person_id).join(
            _state,
            and_(
                _state.c.channel == _identity.c.channel,
                _state.c.external_id == _identity.c.external_id,
            ),
        )
    )
    .where(
        _identity.c.channel == bindparam("channel"),
        _identity.c.external_id == bindparam("external_id"),
    )
    .with_for_update(of=_state)
)
_IDENTITY = (
    select(
        _identity.c.id,
        _identity.c.last_inbound_at,
        _person.c.id,
        _person.c.display_name,
        _identity.c.unreachable_at,
    )
    .join(_person, _person.c.id == _identity.c.person_id)
    .where(
        _identity.c.channel == bindparam("channel"),
        _identity.c.external_id == bindparam("external_id"),
    )
)
_STATE = (
    select(_state.c.id, _state.c.flow, _state.c.step, _state.c.data, _state.c.expires_at)
    .where(
        _state.c.channel == bindparam("channel"),
        _state.c.external_id == bindparam("external_id"),
    )
    .with_for_update()
)
_NEW_PERSON = insert(_person).returning(_person.c.id)
_NEW_IDENTITY = insert(_identity)
_SEEN = update(_identity).where(_identity.c.id == bindparam("identity_id"))
_NEW_STATE = insert(_state)
_SAVE_STATE = update(_state).where(_state.c.id == bindparam("state_id"))
_NO_BACKLOG = select(_BACKLOG)


def _receipt_upsert(name: str) -> Any:
    """The receipt, or a queued row turned ``done``; nothing (no row returned) when the
    message was handled before. Returns the row's ``queued_at``: set when the message was
    acknowledged before it was handled, so its replies go through the outbox."""
    statement = insert_for(name, _receipt)
    return statement.on_conflict_do_update(
        index_elements=["channel", "key"],
        set_={
            "replies": statement.excluded.replies,
            "at": statement.excluded.at,
            "status": "done",
            "inbound": None,
            "last_error": None,
        },
        where=_receipt.c.status == "queued",
    ).returning(_receipt.c.queued_at)


_RECEIPT = {name: _receipt_upsert(name) for name in DIALECTS}


async def load(
    conn: AsyncConnection,
    inbound: Message,
    home: str,
    now: datetime,
    queued_at: datetime | None = None,
) -> tuple[Speaker, State, bool]:
    """The sender (created on first contact), their dialog state, locked, and whether an
    older message of theirs is waiting to be handled (``queued_at``: this message's own
    time in that queue, when it is being handled from there)."""
    where = {"channel": inbound.channel, "external_id": inbound.user_ref}
    backlog_of = {"key": inbound.message_id, "before": queued_at or _FAR_FUTURE}
    row = (await conn.execute(_KNOWN, where | backlog_of)).first()
    if row is not None:
        backlog = bool(row.backlog)
        identity_id, last_inbound_at = row.id, row.last_inbound_at
        unreachable = row.unreachable_at is not None
        speaker = Speaker(row.person_id, row.display_name)
        state = State(row.flow, row.step, row.data, row.expires_at, row.state_id)
    else:  # first contact, or an identity made elsewhere (an invite, a test) without a state
        found = (await conn.execute(_IDENTITY, where)).first()
        if found is None:
            name = inbound.display_name[:100]
            person_id = (
                await conn.execute(_NEW_PERSON, {"display_name": name, "created_at": now})
            ).scalar_one()
            await conn.execute(
                _NEW_IDENTITY,
                {"person_id": person_id, **where, "created_at": now, "last_inbound_at": now},
            )
            identity_id, last_inbound_at, speaker = None, now, Speaker(person_id, name)
            unreachable = False
        else:
            identity_id, last_inbound_at = found[0], found[1]
            unreachable = found[4] is not None
            speaker = Speaker(found[2], found[3])
        stored = (await conn.execute(_STATE, where)).first()
        state = State(home, "idle") if stored is None else State(*stored[1:], id=stored[0])
        backlog = bool((await conn.execute(_NO_BACKLOG, where | backlog_of)).scalar())
    if identity_id is not None and (
        unreachable or last_inbound_at is None or now - last_inbound_at >= INBOUND_RESOLUTION
    ):
        # Writing again makes a chat reachable again (a Telegram 403 had marked it).
        seen = {"identity_id": identity_id, "last_inbound_at": now, "unreachable_at": None}
        await conn.execute(_SEEN, seen)
    return speaker, state, backlog


async def save(
    conn: AsyncConnection,
    inbound: Message,
    state: State,
    now: datetime,
    expires_at: datetime,
    receipt: list[dict[str, Any]] | None,
    late: bool = False,
) -> bool:
    """Write the state and, for a message with an id, its receipt; True when the message
    had been acknowledged before it was handled (queued, or ``late``): its replies go
    through the outbox.
    Raises ``Duplicate`` when it was handled before (a retry ends here)."""
    values = {
        "flow": state.flow,
        "step": state.step,
        "data": state.data,
        "updated_at": now,
        "expires_at": expires_at,
    }
    if state.id is None:
        await conn.execute(
            _NEW_STATE, {"channel": inbound.channel, "external_id": inbound.user_ref, **values}
        )
    else:
        await conn.execute(_SAVE_STATE, {"state_id": state.id, **values})
    if receipt is None:
        return False
    written = await conn.execute(
        _RECEIPT[dialect(conn)],
        {
            "channel": inbound.channel,
            "key": inbound.message_id,
            "replies": receipt,
            "at": now,
            # Acknowledged already, though not through the queue (``late``): so marked, every
            # later delivery knows its replies go through the outbox.
            "queued_at": now if late else None,
        },
    )
    row = written.first()
    if row is None:
        raise Duplicate(inbound.message_id)
    return row.queued_at is not None
