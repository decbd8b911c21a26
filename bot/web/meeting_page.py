"""A meeting's public page ``GET /m/<code>`` (what, when in China time, where, agenda and
materials, how to join: the Telegram link and the WeChat temporary code), its calendar file
``/m/<code>.ics`` and its code ``/m/<code>/wechat.png``. The video link is on the page only
in the live window; a cancelled or finished meeting says so and offers no way to join."""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta

from aiohttp import web

from bot.qr import telegram_link
from bot.services import Services
from bot.web.pages import PAGES
from bot.web.public_pages import HEADERS, html
from bot.web.wechat_codes import temporary_code
from notices.calendar_file import meeting_ics
from storage.meetings import Meeting
from storage.models import Topic
from workflow.lifecycle import LIVE_BEFORE
from workflow.meetings import find_meeting, is_live, is_over
from workflow.payloads import START_MEETING
from workflow.when import say_when

ROUTE = "/m/{code}"
#: WeChat's longest temporary code.
CODE_LIMIT = timedelta(days=30)
CODES_KEPT = 1000


def setup(app: web.Application, services: Services) -> None:
    #: (code, version) → PNG: WeChat is asked once per meeting and schedule.
    codes: OrderedDict[tuple[str, int], bytes] = OrderedDict()
    base = services.config.server.public_base_url.rstrip("/")

    async def load(code: str) -> tuple[Meeting, Topic]:
        async with services.sessions() as session:
            meeting = await find_meeting(session, code)
            topic = await session.get(Topic, meeting.topic_id) if meeting else None
        if meeting is None or topic is None:
            raise web.HTTPNotFound(text="没有这个会议。")
        return meeting, topic

    async def page(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        if code.endswith(".ics"):
            return await ics(code.removesuffix(".ics"))
        meeting, topic = await load(code)
        now = services.clock.now()
        bot = services.config.telegram.bot_username
        rendered = PAGES.get_template("meeting.html").render(
            meeting=meeting,
            topic=topic,
            when=say_when(meeting.starts_at, now=now),
            link_from=say_when(meeting.starts_at - LIVE_BEFORE, now=now),
            live=is_live(meeting, now),
            over=is_over(meeting, now),
            telegram=telegram_link(bot, START_MEETING.build(code)) if bot else "",
            wechat_code=bool(services.config.wechat.app_id),
            url=f"{base}/m/{code}",
        )
        response = html(rendered)
        response.headers["Cache-Control"] = "no-cache"  # the live window opens and closes
        return response

    async def ics(code: str) -> web.Response:
        meeting, topic = await load(code)
        body = meeting_ics(meeting, topic, f"{base}/m/{code}", services.clock.now())
        return web.Response(
            body=body,
            content_type="text/calendar",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="meeting-{code}.ics"'},
        )

    async def wechat_code(request: web.Request) -> web.Response:
        """The meeting's temporary WeChat code, valid until it ends (at most 30 days)."""
        code = request.match_info["code"]
        if not services.config.wechat.app_id:
            raise web.HTTPNotFound()
        meeting, _ = await load(code)
        now = services.clock.now()
        if is_over(meeting, now):
            raise web.HTTPGone(text="会议已取消或已结束。")
        key = (code, meeting.version)
        if key not in codes:
            seconds = int(min(meeting.ends_at - now, CODE_LIMIT).total_seconds())
            codes[key] = await temporary_code(services, START_MEETING.build(code), seconds)
            while len(codes) > CODES_KEPT:
                codes.popitem(last=False)
        return web.Response(body=codes[key], content_type="image/png", headers=HEADERS)

    app.router.add_get(ROUTE, page)
    app.router.add_get(ROUTE + "/wechat.png", wechat_code)
