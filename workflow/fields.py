"""The fields an action takes (``FIELDS`` in lifecycle.py): checked and coerced for
``Lifecycle.apply`` (text within its limit, a URL, a choice, a room by code, a date or a
time), and the form they are recorded in a ``TopicEvent``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Attachment, Room, Topic
from workflow.clock import CHINA
from workflow.errors import InvalidField, MissingField
from workflow.lifecycle import FIELDS, Transition
from workflow.rooms import get_room
from workflow.texts import label
from workflow.uploads import attachment_ids, uploaded


async def check_fields(
    session: AsyncSession,
    transition: Transition,
    fields: Mapping[str, Any],
    topic: Topic,
    now: datetime,
) -> dict[str, Any]:
    """The fields ``transition`` takes on ``topic``, checked and coerced, with the defaults
    of those left out; a refusal names the first wrong one."""
    allowed = (*transition.required, *transition.optional)
    action_label = label("actions", transition.action)
    for name in fields:
        if name not in allowed:
            raise InvalidField("unexpected_field", action=action_label, field=label("fields", name))
    values: dict[str, Any] = {}
    for name in allowed:
        raw = fields.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if name in transition.required:
                raise MissingField("missing_field", field=label("fields", name))
            if FIELDS[name].default_days:
                values[name] = default_date(name, now)
            continue
        values[name] = await _coerce(session, name, raw, topic)
        if FIELDS[name].future and values[name] <= now.astimezone(CHINA).date():
            raise InvalidField("date_not_future", field=label("fields", name))
    return values


def default_date(name: str, now: datetime) -> date:
    """What a date field with a default is when left out (``FieldSpec.default_days``)."""
    return now.astimezone(CHINA).date() + timedelta(days=FIELDS[name].default_days)


async def shown_photos(session: AsyncSession, topic: Topic) -> list[Attachment]:
    """The topic's photos that may be offered for publication: stored images, oldest first."""
    rows = await session.exec(
        select(Attachment)
        .where(
            Attachment.topic_id == topic.id,
            Attachment.kind == "image",
            Attachment.status == "stored",
        )
        .order_by(col(Attachment.id))
    )
    return list(rows)


def text_field(name: str, value: Any, limit: int, *, allow_empty: bool = False) -> str:
    """``value`` stripped, when it is text within ``limit`` (and not empty, unless allowed)."""
    if not isinstance(value, str):
        raise InvalidField("empty", field=label("fields", name))
    value = value.strip()
    if not value and not allow_empty:
        raise MissingField("missing_field", field=label("fields", name))
    if len(value) > limit:
        raise InvalidField("too_long", field=label("fields", name), limit=limit, length=len(value))
    return value


def url_field(name: str, value: Any) -> str:
    """``value`` stripped, when it is an https address within the field's limit."""
    value = text_field(name, value, FIELDS[name].max_len)
    if not re.match(r"https://[^\s/]+\S*$", value):
        raise InvalidField("bad_url", field=label("fields", name))
    return value


async def _coerce(session: AsyncSession, name: str, raw: Any, topic: Topic) -> Any:
    spec, field_label = FIELDS[name], label("fields", name)
    if spec.kind == "photos":
        return await _photos(session, name, raw, topic)
    if spec.kind == "uploads":
        return await uploaded(session, name, raw)
    if spec.kind == "url":
        return url_field(name, raw)
    if spec.kind == "text":
        return text_field(name, raw, spec.max_len)
    if spec.kind == "choice":
        if raw not in spec.choices:
            raise InvalidField("bad_choice", field=field_label, choices="、".join(spec.choices))
        return raw
    if spec.kind == "room":
        room = raw if isinstance(raw, Room) else await get_room(session, str(raw).strip())
        if room is None:
            raise InvalidField("unknown_room", code=str(raw))
        return room
    if spec.kind == "datetime":
        try:
            moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
        except ValueError:
            raise InvalidField("bad_datetime", field=field_label) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=CHINA)
    try:  # date
        return raw if isinstance(raw, date) else date.fromisoformat(str(raw))
    except ValueError:
        raise InvalidField("bad_date", field=field_label) from None


async def _photos(session: AsyncSession, name: str, raw: Any, topic: Topic) -> list[int]:
    """Attachment ids (a list, or "3,5" from a form), each one of the topic's photos."""
    wanted = attachment_ids(name, raw, "bad_photos")
    offered = {a.id for a in await shown_photos(session, topic)}
    if any(photo not in offered for photo in wanted):
        raise InvalidField("bad_photos", field=label("fields", name))
    return sorted(wanted)


def jsonable(value: Any) -> Any:
    """A coerced field as the event records it (a room by its code, a date in ISO form)."""
    if isinstance(value, Room):
        return value.code
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    return value
