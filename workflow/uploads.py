"""Photos sent in the chat while a step is being taken (after the meeting: the minutes on
paper, the room, who came; ``FieldSpec("uploads")`` in lifecycle.py).

They arrive before the step is taken, as the person's own attachments not yet linked to
anything (the dialog keeps their ids). ``Lifecycle.apply`` checks them before it changes
the topic (``check_uploads``: the actor's own, unlinked, not failed) and links them to the
topic and the step's event after (``link_uploads``), in the same transaction: a step given
up leaves them unlinked, never half on the topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Attachment
from workflow.errors import InvalidField
from workflow.lifecycle import FIELDS, Transition
from workflow.texts import label


def attachment_ids(name: str, raw: Any, refusal: str) -> list[int]:
    """Attachment ids (a list, or "3,5" from a form), each once, in the order given;
    ``refusal`` is the error's key when they are not ids."""
    parts = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(parts, list | tuple):
        raise InvalidField(refusal, field=label("fields", name))
    ids: list[int] = []
    for part in parts:
        text = str(part).strip()
        if not text.isdecimal() or len(text) > 12:
            raise InvalidField(refusal, field=label("fields", name))
        if int(text) not in ids:
            ids.append(int(text))
    return ids


async def uploaded(session: AsyncSession, name: str, raw: Any) -> list[int]:
    """The attachment ids of an uploads field, at most the field's ``max_len`` of them."""
    ids = attachment_ids(name, raw, "bad_uploads")
    limit = FIELDS[name].max_len
    if len(ids) > limit:
        raise InvalidField("too_many_uploads", field=label("fields", name), limit=limit)
    return ids


def _upload_fields(transition: Transition) -> list[str]:
    return [
        name
        for name in (*transition.required, *transition.optional)
        if FIELDS[name].kind == "uploads"
    ]


async def check_uploads(
    session: AsyncSession,
    transition: Transition,
    values: Mapping[str, Any],
    person_id: int | None,
) -> None:
    """Refuse ids that are not the actor's own photos waiting to be linked."""
    for name in _upload_fields(transition):
        ids = values.get(name) or []
        if not ids:
            continue
        rows = (await session.exec(select(Attachment).where(col(Attachment.id).in_(ids)))).all()
        good = {
            row.id
            for row in rows
            if row.uploaded_by_id == person_id
            and row.topic_id is None
            and row.kind == "image"
            and row.status != "failed"
        }
        if good != set(ids):
            raise InvalidField("bad_uploads", field=label("fields", name))


async def link_uploads(
    session: AsyncSession,
    transition: Transition,
    values: Mapping[str, Any],
    topic_id: int,
    event_id: int,
) -> None:
    """Link the checked uploads to the topic and the event that recorded them."""
    ids = [i for name in _upload_fields(transition) for i in values.get(name) or []]
    if not ids:
        return
    await session.exec(
        update(Attachment)
        .where(col(Attachment.id).in_(ids), col(Attachment.topic_id).is_(None))
        .values(topic_id=topic_id, event_id=event_id)
        .execution_options(synchronize_session=False)
    )
