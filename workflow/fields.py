"""The fields an action takes (``FIELDS`` in lifecycle.py): checked and coerced for
``Lifecycle.apply`` (text within its limit, a URL, a choice, a room by code, a date or a
time), and the form they are recorded in a ``TopicEvent``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Room
from workflow.clock import CHINA
from workflow.errors import InvalidField, MissingField
from workflow.lifecycle import FIELDS, Transition
from workflow.rooms import get_room
from workflow.texts import label


async def check_fields(
    session: AsyncSession, transition: Transition, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """The fields ``transition`` takes, checked and coerced; a refusal names the first wrong one."""
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
            continue
        values[name] = await _coerce(session, name, raw)
    return values


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


async def _coerce(session: AsyncSession, name: str, raw: Any) -> Any:
    spec, field_label = FIELDS[name], label("fields", name)
    if spec.kind in ("text", "url"):
        value = text_field(name, raw, spec.max_len)
        if spec.kind == "url" and not re.match(r"https?://\S+$", value):
            raise InvalidField("bad_url", field=field_label)
        return value
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


def jsonable(value: Any) -> Any:
    """A coerced field as the event records it (a room by its code, a date in ISO form)."""
    if isinstance(value, Room):
        return value.code
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    return value
