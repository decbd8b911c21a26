"""Using a ``ButtonRef``: a reviewer's chat button, or a review link (the one use case).

A reference is made for one person, one topic at one version and one action (or, for a
review link, any action that person may take there: ``REVIEW_PAGE``). ``check_ref`` says
whether it may be used now; ``use_ref`` checks it, marks it used with a conditional update
— of two uses at once exactly one wins — and takes the step it stands for, all in the
caller's transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ButtonRef, Topic
from workflow.engine import available_actions
from workflow.errors import WorkflowError
from workflow.permissions import load_actor
from workflow.texts import label

#: ``ButtonRef.action`` of a review link: one person, one topic, one version, any action
#: that person may take there (chosen on the page).
REVIEW_PAGE = "review_page"


@dataclass(frozen=True)
class RefRefusal:
    """Why a reference is not honoured: ``reason`` is stable (audited); ``state`` and
    ``action`` are labels for the message shown."""

    reason: str  # forged / used / stale / not_permitted
    state: str = ""
    action: str = ""


async def find_ref(session: AsyncSession, token: str) -> ButtonRef | None:
    return (await session.exec(select(ButtonRef).where(ButtonRef.token == token))).first()


async def check_ref(
    session: AsyncSession,
    ref: ButtonRef | None,
    person_id: int | None,
    *,
    action: str | None = None,
) -> RefRefusal | None:
    """The checks every use of a ``ButtonRef`` must pass, or why it fails.

    The reference must exist and be this person's, unused, made for the topic's current
    version, and the action (``action`` for a review link, else the button's own) still
    allowed for the person's live roles in the topic's current state. A review link
    without ``action`` (opening the page) needs at least one allowed action. A review-link
    reference is never a chat button, nor the other way round.
    """
    page = action is not None or (ref is not None and ref.action == REVIEW_PAGE)
    if ref is None or person_id is None or ref.person_id != person_id:
        return RefRefusal("forged")
    if page and ref.action != REVIEW_PAGE:
        return RefRefusal("forged")
    if ref.used_at is not None:
        return RefRefusal("used")
    topic = await session.get(Topic, ref.topic_id)
    if topic is None:
        return RefRefusal("forged")
    state = label("states", topic.state)
    if topic.version != ref.topic_version:
        return RefRefusal("stale", state=state)
    allowed = await available_actions(session, topic, await load_actor(session, person_id))
    wanted = action if page else ref.action
    if wanted is None:
        return None if allowed else RefRefusal("not_permitted", state=state)
    if wanted not in allowed:
        return RefRefusal("not_permitted", state=state, action=label("actions", wanted))
    return None


async def use_ref(
    session: AsyncSession,
    ref: ButtonRef | None,
    person_id: int | None,
    now: datetime,
    step: Callable[[], Awaitable[object]],
    *,
    action: str | None = None,
) -> RefRefusal | None:
    """Use ``ref`` as ``person_id`` to take ``step`` (the lifecycle call it stands for).

    Returns why not (nothing done), or None once the reference is marked used and the step
    taken. The mark is a conditional update (``used_at IS NULL``) made before the step: a
    second use at the same moment waits for this transaction (PostgreSQL's row lock,
    SQLite's one writer) and then finds it used. A step that refuses (``WorkflowError``,
    re-raised) leaves the reference unused, so a corrected answer may use it again; any
    other error aborts the caller's transaction anyway.
    """
    refusal = await check_ref(session, ref, person_id, action=action)
    if refusal is not None:
        return refusal
    assert ref is not None
    if not await _mark(session, ref, now, used=True):
        return RefRefusal("used")
    try:
        await step()
    except WorkflowError:
        await _mark(session, ref, now, used=False)
        raise
    return None


async def _mark(session: AsyncSession, ref: ButtonRef, now: datetime, *, used: bool) -> bool:
    """Mark ``ref`` used (False if another use won), or undo this transaction's own mark
    (nobody else can have touched the row since: the mark holds its lock)."""
    statement = update(ButtonRef).where(col(ButtonRef.id) == ref.id)
    if used:
        statement = statement.where(col(ButtonRef.used_at).is_(None))
    result = await session.exec(
        statement.values(used_at=now if used else None).execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    set_committed_value(ref, "used_at", now if used else None)
    return True
