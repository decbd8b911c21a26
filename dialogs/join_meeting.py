"""Joining a meeting from afar: its public link (Telegram ``/start m_<code>``, its WeChat
temporary code, the page's links) → the name to show → where one lives (a city or a time
zone, optional) → registered, and the join card: agenda and materials, the time in China
time and in theirs, the calendar file, and when the video link will come. The link itself
is given only in the live window (``ml:<id>``, and the ``meeting.live`` reminder)."""

from __future__ import annotations

from typing import Any

from dialogs.conversation import SAY, Conversation, say
from dialogs.handlers import Flow, Handlers, on
from dialogs.types import Button
from storage.meetings import Meeting, MeetingParticipant
from storage.models import Topic
from workflow.errors import InvalidField, WrongState
from workflow.lifecycle import LIVE_BEFORE
from workflow.meetings import (
    NAME_MAX,
    Whereabouts,
    check_open,
    find_meeting,
    ics_key,
    is_live,
    participant,
    register,
    shown_name,
    their_zone,
    zone_label,
    zone_of,
)
from workflow.payloads import MEETING_JOIN, MEETING_LINK, START_MEETING, Payload
from workflow.texts import text
from workflow.when import say_when

NAME = "join"


def _button(key: str, payload: str, **params: Any) -> Button:
    return Button(SAY.sections["buttons_join"][key].format(**params), payload)


async def start(conv: Conversation, code: str) -> None:
    meeting = await find_meeting(conv.session, code)
    if meeting is None:
        conv.reply(text("errors", "unknown_meeting"))
        return
    if not _open(conv, meeting):
        return
    assert meeting.id is not None and conv.person.id is not None
    known = await participant(conv.session, meeting.id, conv.person.id)
    if known is not None and known.registered_at is not None:
        await _card(conv, meeting, known, again=True)
        return
    topic = await _topic(conv, meeting)
    conv.state.data = {
        **({"room": conv.data["room"]} if "room" in conv.data else {}),
        NAME: {"meeting": meeting.id},
    }
    conv.goto(NAME, "name")
    offered = conv.person.display_name.strip()
    conv.reply(
        say(
            "join",
            "welcome",
            title=topic.title,
            when=say_when(meeting.starts_at, now=conv.now),
            limit=NAME_MAX,
        ),
        *(
            [_button("same_name", Payload.JOIN_SAME_NAME, name=offered[:NAME_MAX])]
            if offered
            else []
        ),
    )


async def step(conv: Conversation) -> None:
    joining = conv.data.get(NAME) or {}
    meeting = await conv.session.get(Meeting, joining.get("meeting"))
    if meeting is None:
        conv.home()
        conv.reply(text("errors", "unknown_meeting"))
        return
    inbound = conv.inbound
    typed = inbound.text.strip() if inbound.kind == "text" else ""
    pressed = inbound.payload if inbound.kind == "button" else ""
    if conv.state.step == "name":
        try:
            joining["name"] = shown_name(
                conv.person.display_name if pressed == Payload.JOIN_SAME_NAME else typed
            )
        except InvalidField as refusal:
            conv.reply(refusal.message)
            return
        conv.goto(NAME, "zone")
        conv.reply(say("join", "ask_zone"), _button("no_zone", Payload.JOIN_NO_ZONE))
        return
    whereabouts: Whereabouts | None = None
    if pressed != Payload.JOIN_NO_ZONE:
        try:
            whereabouts = zone_of(typed)
        except InvalidField as refusal:
            conv.reply(refusal.message, _button("no_zone", Payload.JOIN_NO_ZONE))
            return
    assert conv.person.id is not None
    try:
        row = await register(
            conv.session,
            meeting,
            conv.person.id,
            display_name=joining["name"],
            whereabouts=whereabouts,
            now=conv.now,
        )
    except (InvalidField, WrongState) as refusal:
        conv.home()
        conv.reply(refusal.message)
        return
    conv.home()
    await _card(conv, meeting, row, again=False)


def _open(conv: Conversation, meeting: Meeting) -> bool:
    """Is the meeting still to be joined? If not (cancelled, over), it is said why."""
    try:
        check_open(meeting, conv.now)
    except WrongState as refusal:
        conv.reply(refusal.message)
        return False
    return True


async def _topic(conv: Conversation, meeting: Meeting) -> Topic:
    topic = await conv.session.get(Topic, meeting.topic_id)
    assert topic is not None
    return topic


async def _card(
    conv: Conversation, meeting: Meeting, person: MeetingParticipant, *, again: bool
) -> None:
    """The join card, with the button for the video link."""
    topic = await _topic(conv, meeting)
    page = f"{conv.public_base_url.rstrip('/')}/m/{meeting.code}"
    their = (
        say(
            "join",
            "their_time",
            when=say_when(
                meeting.starts_at, their_zone(person), zone_name=zone_label(person), now=conv.now
            ),
        )
        if person.zone
        else ""
    )
    link = (
        say("join", "link_now", url=meeting.video_url)
        if meeting.video_url and is_live(meeting, conv.now)
        else say(
            "join",
            "link_later" if meeting.video_url else "no_link",
            when=say_when(meeting.starts_at - LIVE_BEFORE, now=conv.now),
        )
    )
    assert meeting.id is not None
    conv.reply(
        say(
            "join",
            "again" if again else "registered",
            name=person.display_name,
        )
        + say(
            "join",
            "card",
            title=topic.title,
            number=topic.number,
            when=say_when(meeting.starts_at, now=conv.now),
            their=their,
            place=meeting.place,
            agenda=meeting.agenda or say("join", "none"),
            materials=meeting.materials or say("join", "none"),
            ics=f"{page}.ics",
            page=page,
            link=link,
        ),
        *([_button("get_link", MEETING_LINK.build(meeting.id))] if meeting.video_url else []),
    )
    # The calendar file itself where the chat takes files (WeChat's customer-service
    # messages carry images only: there the card's link serves it). Keyed per schedule:
    # asking again sends it again only after a reschedule. It is written during the step,
    # so it arrives just before the card (written after it), not after.
    if conv.inbound.channel != "wechat" and conv.person.id is not None:
        await conv.tell(
            conv.person.id,
            f"meeting.ics:{meeting.id}:v{meeting.version}:{conv.person.id}",
            say("join", "ics_file", title=topic.title),
            kind="meeting.ics",
            topic_id=topic.id,
            file=(ics_key(meeting), f"{topic.number}-协商会议.ics", "document"),
        )


async def video_link(conv: Conversation, meeting_id: int) -> None:
    """The video link, in the live window, for someone registered."""
    meeting = await conv.session.get(Meeting, meeting_id)
    assert conv.person.id is not None
    registered = await participant(conv.session, meeting_id, conv.person.id) if meeting else None
    if meeting is None or registered is None or registered.registered_at is None:
        conv.reply(say("join", "not_registered"))
        return
    if not _open(conv, meeting):
        return
    if not is_live(meeting, conv.now):
        conv.reply(
            say(
                "join",
                "link_later",
                when=say_when(meeting.starts_at - LIVE_BEFORE, now=conv.now),
            )
        )
        return
    conv.reply(say("join", "link_now", url=meeting.video_url))


HANDLERS = Handlers(
    "join_meeting",
    commands=[on(MEETING_LINK, video_link)],
    # An invitation's 报名参会 (dialogs/research.py): as the join link.
    buttons=[on(MEETING_JOIN, start)],
    flows={NAME: Flow(step, answers=(Payload.JOIN_SAME_NAME, Payload.JOIN_NO_ZONE))},
    starts=[on(START_MEETING, start)],
)
