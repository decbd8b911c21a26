"""What a reviewer sees of a topic (the card) and the buttons that come with it.

A button carries only an opaque token; ``ButtonRef`` remembers for whom, which topic,
which action and which version of the topic it was made. Both the chat dialogs and the
notices (a card pushed to a reviewer) use this module.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Attachment, ButtonRef, Person, Room, Topic
from workflow.engine import available_actions
from workflow.lifecycle import CLOCKED_STATES, FINAL_STATES, State
from workflow.payloads import REVIEW
from workflow.permissions import Actor
from workflow.similar import most_similar
from workflow.texts import by_day, catalogue, label, text
from workflow.waiting import review_wait
from workflow.workdays import WorkdayCalendar

#: What a review action's payload starts with (its kind is declared in workflow/payloads.py).
BUTTON_PREFIX = REVIEW.prefix
SIMILAR_POOL = 200  # the newest open topics of the room that are compared
BACKGROUND_SHOWN = 300

#: What the person acting in a state decides on, besides the topic itself: fields recorded
#: by the step that led there (``Topic.facts[action][field]``), with the most characters
#: shown. The limits keep a whole card, notice and similar topics included, in one Telegram
#: message (4,096 UTF-16 units); WeChat cuts a long card into pieces (bot/pieces.py). Labels
#: are ``[cards] deciding_<field>``.
DECIDING: dict[str, tuple[tuple[str, str, int], ...]] = {
    State.AWAITING_APPROVAL: (("screen_accept", "category", 20), ("screen_accept", "reason", 300)),
    State.OUTCOME_REVIEW: (
        ("record_meeting", "consensus", 1000),
        ("record_meeting", "minutes", 600),
        ("record_meeting", "meeting_photos", 0),
    ),
    State.AWAITING_REPLY: (("request_reply", "department", 60), ("request_reply", "reply_due", 20)),
    State.REOPENED: (("reopen", "reason", 300),),
}


def mask_phone(phone: str | None) -> str:
    return f"{phone[:3]}****{phone[-4:]}" if phone and len(phone) >= 7 else ""


def mask_name(name: str) -> str:
    return name[0] + "*" * min(len(name) - 1, 2) if name else ""


async def card_text(
    session: AsyncSession, topic: Topic, calendar: WorkdayCalendar, now: datetime
) -> str:
    room = await session.get(Room, topic.room_id)
    person = await session.get(Person, topic.submitter_id) if topic.submitter_id else None
    attachments = (
        await session.exec(
            select(func.count()).select_from(Attachment).where(Attachment.topic_id == topic.id)
        )
    ).one()
    submitter = " ".join(
        part
        for part in (
            mask_name(person.display_name) if person else "",
            mask_phone(topic.contact_phone),
        )
        if part
    ) or text("cards", "anonymous")
    due = ""
    if topic.review_due_at is not None and topic.state in CLOCKED_STATES:
        wait = review_wait(calendar, topic.step_started_at, topic.review_due_at, now)
        due = text("cards", "due", by=by_day(wait.due_by), waited=wait.waited)
    lines = [
        text(
            "cards",
            "card",
            state=label("states", topic.state),
            number=topic.number,
            room=room.name if room else "",
            title=topic.title,
            background=_short(topic.background, BACKGROUND_SHOWN),
            deciding=_deciding(topic),
            source=label("sources", topic.source),
            attachments=attachments,
            submitter=submitter,
            due=due,
        ).rstrip()
    ]
    similar = await similar_topics(session, topic)
    if similar:
        lines.append(text("cards", "similar_title"))
        lines += [
            text(
                "cards",
                "similar_item",
                number=t.number,
                title=t.title,
                state=label("states", t.state),
            )
            for t in similar
        ]
    return "\n".join(lines)


async def similar_topics(session: AsyncSession, topic: Topic, limit: int = 3) -> list[Topic]:
    """Up to ``limit`` open topics in the same room that read like this one."""
    others = (
        await session.exec(
            select(Topic)
            .where(
                Topic.room_id == topic.room_id,
                Topic.id != topic.id,
                col(Topic.state).not_in([str(s) for s in FINAL_STATES]),
            )
            .order_by(col(Topic.id).desc())
            .limit(SIMILAR_POOL)
        )
    ).all()
    by_id = {t.id: t for t in others if t.id is not None}
    matches = most_similar(
        topic.title,
        topic.background,
        [(key, t.title, t.background) for key, t in by_id.items()],
        limit,
    )
    return [by_id[m.key] for m in matches]


async def action_buttons(
    session: AsyncSession, topic: Topic, actor: Actor, now: datetime
) -> list[tuple[str, str]]:
    """(label, payload) for every action ``actor`` may take now, each a fresh ButtonRef."""
    assert actor.person_id is not None and topic.id is not None
    buttons = []
    for action in await available_actions(session, topic, actor):
        token = secrets.token_urlsafe(12)
        session.add(
            ButtonRef(
                token=token,
                person_id=actor.person_id,
                topic_id=topic.id,
                action=action,
                topic_version=topic.version,
                created_at=now,
            )
        )
        buttons.append((label("actions", action), REVIEW.build(token)))
    await session.flush()
    return buttons


def _deciding(topic: Topic) -> str:
    """The lines of ``DECIDING`` for the topic's state, each ending in a line break."""
    lines = []
    for action, name, limit in DECIDING.get(topic.state, ()):
        recorded = topic.facts.get(action, {}).get(name)
        if isinstance(recorded, list):  # attachment ids: how many
            recorded = len(recorded)
        value = str(recorded or "").strip()
        if value:
            # ``deciding_<action>_<field>`` where one field means different things by step.
            key = f"deciding_{action}_{name}"
            key = key if key in catalogue()["cards"] else f"deciding_{name}"
            lines.append(text("cards", key, value=_short(value, limit) if limit else value) + "\n")
    return "".join(lines)


def _short(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
