"""Public topic pages, ``GET /t/<number>`` (the seed of 码上建议 / 码上查情). A topic has one
only once it is publicized (``PUBLIC_STATES``); before that, or declined, redirected or
withdrawn, its number answers as an unknown one does. Only public facts are shown: never the
submitter, their phone or location."""

from __future__ import annotations

from aiohttp import web
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services import Services
from bot.web.pages import PAGES
from storage.models import Room, Topic, TopicEvent
from workflow.clock import CHINA, last_day
from workflow.lifecycle import PUBLIC_STATES, State
from workflow.texts import by_day, label

ROUTE = "/t/{number}"


def setup(app: web.Application, services: Services) -> None:
    async def get(request: web.Request) -> web.Response:
        async with services.sessions() as session:
            page = await topic_page(session, request.match_info["number"])
        if page is None:
            raise web.HTTPNotFound(text="没有这个议题。")
        return web.Response(text=page, content_type="text/html")

    app.router.add_get(ROUTE, get)


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
    return PAGES.get_template("topic.html").render(
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
