"""Meetings (协商议事) with remote participants, through the real app and the platform fakes:
the convener's time (understood at once, said back, refused when wrong), a remote
participant's journey on Telegram (link → name → city → join card with both times and the
.ics → reminders → live-window link; WeChat in test_meetings_wechat.py), reminders moved
out of the night across New York's daylight-saving change, a reschedule that moves every
reminder and tells everyone, a cancellation, and the refusals of "Bad input"."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import icalendar
from aiohttp.test_utils import TestClient
from sqlmodel import col, select

from bot.services import Services
from dialogs.types import Inbound
from storage.meetings import Meeting, MeetingParticipant
from storage.models import OutboxMessage, Topic
from tests.fakes.telegram_api import FakeBotAPI
from tests.test_review import Reviewer, texts
from tests.test_telegram import (  # noqa: F401  (fixtures, by name)
    USER,
    Resident,
    client,
    config_path,
    fake,
    services,
)
from tests.world import World, build_world
from workflow.clock import CHINA, FixedClock
from workflow.lifecycle import State

#: Tuesday 2026-03-10 12:00 China time = 00:00 in New York (EDT since Sunday 2026-03-08).
MEETING = datetime(2026, 3, 10, 12, 0, tzinfo=CHINA)


async def scheduled(world: World, when: datetime = MEETING, **fields: Any) -> Topic:
    topic = await world.at(State.RESEARCHING)
    topic = await world.walk(topic, ["record_findings"])
    await world.apply(
        topic,
        "schedule_meeting",
        world.person("V1", "convener"),
        time=when.isoformat(),
        place="村部会议室",
        link="https://meeting.tencent.com/dm/abc123",
        agenda="一、通报调研情况；二、讨论选址",
        materials="调研报告（32户）",
        **fields,
    )
    return await world.reload(topic)


async def meeting_of(app: Services, topic: Topic) -> Meeting:
    async with app.sessions() as session:
        return (await session.exec(select(Meeting).where(Meeting.topic_id == topic.id))).one()


async def sent(app: Services, kind: str) -> list[OutboxMessage]:
    async with app.sessions() as session:
        rows = await session.exec(
            select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(col(OutboxMessage.id))
        )
        return list(rows)


async def test_a_remote_participant_on_telegram_from_link_to_the_live_link(
    client: TestClient,  # noqa: F811
    services: Services,  # noqa: F811
    fake: FakeBotAPI,  # noqa: F811
    clock: FixedClock,
) -> None:
    world = await build_world(services.sessions, clock)
    topic = await scheduled(world)
    meeting = await meeting_of(services, topic)
    li = Resident(client, fake, first_name="Hua")
    await li.say(f"/start m_{meeting.code}")
    assert li.last().startswith(
        "欢迎参加协商会议「运河步道增设公厕」（3月10日（周二）12:00，北京时间）"
    )
    await li.say("李" * 21)
    assert "称呼最多 20 个字，您输入了 21 个字" in li.last()
    await li.say("在外乡贤李华")
    assert "您现在住在哪里" in li.last()
    await li.say("Mars/Olympus_Mons")
    assert "没有找到“Mars/Olympus_Mons”这个城市或时区" in li.last()
    await li.say("纽约")
    card = li.last()
    assert card.startswith("在外乡贤李华，报名成功！")
    assert "时间：3月10日（周二）12:00，北京时间" in card
    assert "您当地：3月10日（周二）00:00，纽约时间" in card  # EDT, two days after the change
    assert "议程：一、通报调研情况；二、讨论选址" in card
    assert "视频会议链接将于 3月10日（周二）11:50，北京时间 起发给您" in card
    assert "https://meeting.tencent.com" not in card  # not before the live window
    ics_url = f"/m/{meeting.code}.ics"
    assert f"加入日历：https://bot.example.org{ics_url}" in card

    # The calendar file parses back: the start in China time with its TZID and VTIMEZONE.
    response = await client.get(ics_url)
    assert response.status == 200 and response.content_type == "text/calendar"
    calendar = icalendar.Calendar.from_ical(await response.read())
    [event] = calendar.walk("VEVENT")
    assert event["DTSTART"].params["TZID"] == "Asia/Shanghai"
    assert event.decoded("DTSTART") == MEETING
    assert event.decoded("DTEND") == MEETING + timedelta(hours=2)
    assert [tz["TZID"] for tz in calendar.walk("VTIMEZONE")] == ["Asia/Shanghai"]
    assert "tencent" not in (await response.text())

    # And the file itself in the chat.
    await services.dispatcher().drain()
    ((chat, document, caption),) = fake.uploads("sendDocument")
    assert chat == li.user and caption.startswith("协商会议「运河步道增设公厕」的日历文件")
    assert document.filename.endswith("-协商会议.ics")
    assert document.content == await (await client.get(ics_url)).read()

    # The link asked for early: not yet.
    await li.press("获取会议链接")
    assert li.last().startswith("视频会议链接将于 3月10日（周二）11:50")
    page = await (await client.get(f"/m/{meeting.code}")).text()
    assert "meeting.tencent.com" not in page and "视频会议链接将于" in page

    sweeper = services.sweeper()
    # The 24-hour reminder (Monday 12:00 China = 00:00 in New York) is moved before their
    # night: 21:50 on Sunday 8 March, EDT (UTC-4, the day the clocks went forward) =
    # 09:50 Monday China time.
    clock.set(datetime(2026, 3, 9, 9, 45, tzinfo=CHINA))
    await sweeper.run_once()
    assert await sent(services, "reminder.meeting.reminder") == []
    clock.set(datetime(2026, 3, 9, 9, 55, tzinfo=CHINA))
    await sweeper.run_once()
    [first] = await sent(services, "reminder.meeting.reminder")
    assert "将于约26小时后开始" in first.body["text"]
    assert "（您那里是 3月10日（周二）00:00，纽约时间）" in first.body["text"]
    # At the unshifted time (their midnight) nothing more goes out.
    clock.set(datetime(2026, 3, 9, 12, 5, tzinfo=CHINA))
    await sweeper.run_once()
    assert len(await sent(services, "reminder.meeting.reminder")) == 1
    # The 30-minute one (23:30 on Monday in New York) also goes before their night.
    clock.set(datetime(2026, 3, 10, 9, 55, tzinfo=CHINA))
    await sweeper.run_once()
    reminders = await sent(services, "reminder.meeting.reminder")
    assert len(reminders) == 2 and "约2小时后" in reminders[1].body["text"]
    assert await sent(services, "reminder.meeting.live") == []

    # The live window: the link by itself, on the page, and on asking.
    clock.set(datetime(2026, 3, 10, 11, 51, tzinfo=CHINA))
    await sweeper.run_once()
    [live] = await sent(services, "reminder.meeting.live")
    assert "线上参会链接：https://meeting.tencent.com/dm/abc123" in live.body["text"]
    await li.press("获取会议链接")
    assert li.last() == "视频会议链接：https://meeting.tencent.com/dm/abc123"
    page = await (await client.get(f"/m/{meeting.code}")).text()
    assert 'href="https://meeting.tencent.com/dm/abc123"' in page

    # Over: joining is refused, saying so.
    clock.set(datetime(2026, 3, 10, 14, 0, tzinfo=CHINA))
    other = Resident(client, fake, user=USER + 1)
    await other.say(f"/start m_{meeting.code}")
    assert other.last() == "这次会议（3月10日（周二）12:00，北京时间）已经结束，不能再报名。"
    async with services.sessions() as session:
        rows = (await session.exec(select(MeetingParticipant))).all()
    assert [(p.display_name, p.zone, p.lives_in) for p in rows] == [
        ("在外乡贤李华", "America/New_York", "纽约")
    ]


async def test_a_reschedule_moves_every_reminder_and_tells_everyone_a_cancel_too(
    client: TestClient,  # noqa: F811
    services: Services,  # noqa: F811
    fake: FakeBotAPI,  # noqa: F811
    clock: FixedClock,
) -> None:
    world = await build_world(services.sessions, clock)
    topic = await scheduled(world, datetime(2026, 3, 20, 19, 0, tzinfo=CHINA))
    meeting = await meeting_of(services, topic)
    london = Resident(client, fake, first_name="Wang", last_name="")
    await london.say(f"/start m_{meeting.code}")
    await london.press("就用“Wang”")
    await london.say("europe/london")  # an IANA name, in any case
    assert "您当地：3月20日（周五）11:00，Europe/London" in london.last()
    here = Resident(client, fake, user=USER + 1, first_name="Zhao")
    await here.say(f"/start m_{meeting.code}")
    await here.say("赵")
    await here.press("跳过")
    assert "您当地：" not in here.last() and "报名成功" in here.last()

    # Moved a week later, to 28 March 19:00 (London is on GMT until the 29th).
    await world.apply(
        topic,
        "schedule_meeting",
        world.person("V1", "convener"),
        time="2026-03-28T19:00",
        place="村部会议室",
        link="https://meet.jit.si/yunxi-canal",
    )
    moved = await sent(services, "meeting.moved")
    assert len(moved) == 2
    assert (
        "原定：3月20日（周五）19:00，北京时间\n改为：3月28日（周六）19:00，北京时间"
        in (moved[0].body["text"])
    )
    assert (
        sum("（您那里是 3月28日（周六）11:00，Europe/London）" in m.body["text"] for m in moved)
        == 1
    )
    # No reminder at the old times, however the sweeps fall.
    sweeper = services.sweeper()
    for moment in ("2026-03-19T19:00", "2026-03-20T18:30", "2026-03-20T18:55"):
        clock.set(datetime.fromisoformat(moment).replace(tzinfo=CHINA))
        await sweeper.run_once()
    assert await sent(services, "reminder.meeting.reminder") == []
    assert await sent(services, "reminder.meeting.live") == []
    clock.set(datetime(2026, 3, 27, 19, 5, tzinfo=CHINA))
    await sweeper.run_once()
    assert len(await sent(services, "reminder.meeting.reminder")) == 2

    await world.apply(topic, "cancel_meeting", world.person("V1", "convener"), reason="暴雨预警")
    cancelled = await sent(services, "meeting.cancelled")
    assert len(cancelled) == 2 and "原因：暴雨预警" in cancelled[0].body["text"]
    assert (await world.reload(topic)).state == State.RESEARCHING
    clock.set(datetime(2026, 3, 28, 18, 40, tzinfo=CHINA))
    await sweeper.run_once()
    assert len(await sent(services, "reminder.meeting.reminder")) == 2
    third = Resident(client, fake, user=USER + 2)
    await third.say(f"/start m_{meeting.code}")
    assert third.last() == "这次会议（原定3月28日（周六）19:00，北京时间）已取消，不能再报名。"
    response = await client.get(f"/m/{meeting.code}")
    assert "已取消" in await response.text()


async def test_the_conveners_time_is_understood_at_once_and_said_back(
    services: Services,  # noqa: F811
    clock: FixedClock,
) -> None:
    world = await build_world(services.sessions, clock)
    world.lifecycle = services.lifecycle
    topic = await world.walk(await world.at(State.RESEARCHING), ["record_findings"])
    convener = Reviewer(services.dialogs, "V1:convener")
    [card] = await convener.press(f"o:{topic.id}")  # the topic's card, as 待办 opens it
    pressed = await convener.press(
        next(b.payload for b in card.buttons if b.label == "安排协商会议")
    )
    assert texts(pressed).startswith("请发送会议时间，例如")
    # Refused at once, before the place is asked, with what is wrong.
    assert "请写上几点" in texts(await convener.type("下周三"))
    assert "这个时间已经过去了：2020年1月1日（周三）10:00，北京时间" in texts(
        await convener.type("2020年1月1日10:00")
    )
    refused = texts(await convener.type("3月9日19:00"))
    assert "建议征集到 3月9日24时 截止" in refused
    said = await convener.type("下周三晚上7点")
    assert said[0].text.startswith("会议时间：3月11日（周三）19:00，北京时间。")
    assert [b.label for b in said[0].buttons] == ["确认时间"]
    asked = await convener.press(said[0].buttons[0].payload)
    assert "「会议地点」" in texts(asked)
    await convener.type("村部会议室")
    assert "https://" in texts(await convener.type("http://meeting.tencent.com/x"))
    await convener.type("https://meeting.tencent.com/dm/x")
    await convener.type("讨论选址")
    done = texts(await convener.type("调研报告"))
    assert done.startswith("已办理「安排协商会议」")
    meeting = await meeting_of(services, topic)
    assert f"报名链接（可转发给在外乡贤和专家）：https://bot.example.org/m/{meeting.code}" in done
    assert meeting.starts_at == datetime(2026, 3, 11, 19, 0, tzinfo=CHINA)
    assert (meeting.agenda, meeting.materials) == ("讨论选址", "调研报告")


async def test_named_people_are_invited_and_a_reschedule_shows_whose_night_it_is(
    services: Services,  # noqa: F811
    clock: FixedClock,
) -> None:
    world = await build_world(services.sessions, clock)
    world.lifecycle = services.lifecycle
    topic = await scheduled(world, datetime(2026, 3, 20, 19, 0, tzinfo=CHINA))
    meeting = await meeting_of(services, topic)
    convener = Reviewer(services.dialogs, "V1:convener")
    [offer] = await convener.press(f"yi:{topic.id}")  # 邀请参会人, as the step's reply offers
    assert offer.text.startswith("请点选要邀请参加「运河步道增设公厕」协商会议的人")
    [offer] = await convener.press(offer.buttons[0].payload)  # V1-member
    assert texts(await convener.press(offer.buttons[-1].payload)).startswith("已邀请 1 人")
    [invitation] = [m for m in await sent(services, "meeting.invited")]
    assert invitation.address == "V1:member"
    assert "时间：3月20日（周五）19:00，北京时间" in invitation.body["text"]
    [[label, join]] = invitation.body["buttons"]
    member = Reviewer(services.dialogs, "V1:member")
    assert label == "报名参会"
    assert texts(await member.press(join)).startswith("欢迎参加协商会议")
    await member.type("王委员")
    assert "报名成功" in texts(await member.press("mj:nozone"))

    # A villager in New York registers through the link; moving the meeting to noon
    # Saturday (midnight in New York) says so before it is confirmed.
    far = Reviewer(services.dialogs, "-:resident")
    await services.dialogs.handle(
        Inbound("console", "-:resident", "start", payload=f"m_{meeting.code}")
    )
    await far.type("李华")
    assert "您当地：3月20日（周五）07:00，纽约时间" in texts(await far.type("纽约"))
    [card] = await convener.press(f"o:{topic.id}")
    await convener.press(next(b.payload for b in card.buttons if b.label == "安排协商会议"))
    said = texts(await convener.type("3月21日中午12点"))
    assert said.startswith("会议时间：3月21日（周六）12:00，北京时间。")
    assert "已报名的 1 位远程参会人来说是当地夜间（22:00–07:00）" in said
    said = texts(await convener.type("3月21日晚上8点"))
    assert "当地夜间" not in said
    async with services.sessions() as session:
        rows = (await session.exec(select(MeetingParticipant))).all()
    assert sorted((p.kind, p.display_name) for p in rows) == [
        ("invited", "王委员"),
        ("remote", "李华"),
    ]
