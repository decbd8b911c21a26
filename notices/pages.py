"""Public topic pages (the seed of 码上建议 / 码上查情). A topic has one only once it is
publicized (``PUBLIC_STATES``); before that, or declined, redirected or withdrawn, its
number answers as an unknown one does. Only public facts are shown: never the submitter,
their phone or location."""

from __future__ import annotations

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.notify import TEMPLATES
from storage.models import Room, Topic, TopicEvent
from workflow.clock import CHINA, last_day
from workflow.lifecycle import PUBLIC_STATES, State
from workflow.texts import by_day, label

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


async def topic_page(session: AsyncSession, number: str) -> str | None:
    topic = (await session.exec(select(Topic).where(Topic.number == number))).first()
    if topic is None or topic.state not in PUBLIC_STATES:
        return None  # not public: indistinguishable from a number never given
    room = await session.get(Room, topic.room_id)
    events = (
        await session.exec(
            select(TopicEvent).where(TopicEvent.topic_id == topic.id).order_by(col(TopicEvent.seq))
        )
    ).all()
    published = topic.state in (State.RESULTS_PUBLISHED, State.IMPLEMENTED)
    return _env.get_template("pages/topic.html").render(
        topic=topic,
        room=room,
        state=label("states", topic.state),
        due=by_day(last_day(topic.review_due_at)) if topic.review_due_at else None,
        outcome=topic.facts.get("approve_outcome") if published else None,
        history=[
            {
                "when": e.at.astimezone(CHINA).strftime("%Y-%m-%d"),
                "action": label("actions", e.action),
            }
            for e in events
        ],
    )
