"""A finished draft of the 提议题 flow → a topic. Shared by the flow itself and by a joint
recommendation, which is opened by the last co-signer's confirmation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs.conversation import say
from storage.models import Person, Room, Topic
from workflow.clock import last_day
from workflow.engine import Lifecycle
from workflow.lifecycle import Source
from workflow.permissions import Actor
from workflow.texts import by_day


async def open_draft(
    session: AsyncSession,
    lifecycle: Lifecycle,
    *,
    room: Room,
    actor: Actor,
    draft: Mapping[str, Any],
    uploader_id: int | None,
    fields: Mapping[str, Any] | None = None,
) -> Topic:
    """Open the topic ``draft`` describes; raises a ``WorkflowError`` to refuse.

    ``uploader_id`` is whoever sent the draft's photos and recordings (only their
    attachments are moved onto the topic).
    """
    source = Source(draft.get("source", Source.PUBLIC))
    submitter_id, phone = None, draft.get("phone")
    if source == Source.GRID:
        resident = draft["resident"]
        # Created before the lifecycle decides: if it refuses, the resident stays on file
        # (found again by the phone next time), which is harmless.
        submitter_id = (await resident_person(session, resident["name"], resident["phone"])).id
        phone = resident["phone"]
    topic, _ = await lifecycle.open_topic(
        session,
        room=room,
        actor=actor,
        source=source,
        title=draft["title"],
        background=draft["description"],
        submitter_id=submitter_id,
        contact_phone=phone,
        location=draft.get("location"),
        fields=fields,
        attachment_ids=draft.get("attachments") or (),
        uploader_id=uploader_id,
    )
    return topic


async def resident_person(session: AsyncSession, name: str, phone: str) -> Person:
    """The resident a grid worker names: found by the phone, or created with it.

    The phone is kept on the person privately (for call-backs, never shown in full). A
    person found by the phone keeps the name they have. Follow-ups reach the resident
    through their chat identity; a person created here has none, so they get nothing
    until they are linked to one (the grid worker tells them in person).
    """
    found = (
        await session.exec(select(Person).where(Person.phone == phone).order_by(col(Person.id)))
    ).first()
    if found is not None:
        return found
    person = Person(display_name=name, phone=phone)
    session.add(person)
    await session.flush()
    return person


def receipt(topic: Topic, room: Room) -> str:
    assert topic.review_due_at is not None
    due = last_day(topic.review_due_at)
    return say(
        "submit",
        "receipt",
        number=topic.number,
        room=room.name,
        due=by_day(due),
    )


async def names_of(session: AsyncSession, ids: list[int]) -> list[str]:
    """People's names, in the order of ``ids``."""
    if not ids:
        return []
    rows = await session.exec(select(Person.id, Person.display_name).where(col(Person.id).in_(ids)))
    names = dict(rows.all())
    return [names.get(pid) or f"#{pid}" for pid in ids]
