"""码上建议 in the chat: a room's publicized topics, a topic's public view, 点赞, 关注 and
reporting a suggestion.

A topic is opened by its button, its deep link or WeChat code (``p_<number>``), or from a
room's list. Every button here is a SET (``lk:12:1`` likes, ``lk:12:0`` takes it back), so
pressing one twice, or a retried message, does what it says once. None of these steps
changes the person's place in a dialog: the follow buttons travel on pushes and work from
any message (``commands``), the rest from any message but a modal question's.
"""

from __future__ import annotations

from dialogs.conversation import SAY, Conversation, say
from dialogs.handlers import Handlers, on
from dialogs.types import Button
from storage.models import Room, Topic
from storage.participation import Suggestion
from workflow import participation as pt
from workflow.clock import CHINA
from workflow.consents import CHANNEL as WECHAT
from workflow.consents import has_open_consent
from workflow.errors import WorkflowError
from workflow.lifecycle import Role, public_url
from workflow.payloads import (
    FOLLOW_ROOM,
    FOLLOW_TOPIC,
    LIKE,
    MODERATE,
    PUBLIC_LIST,
    PUBLIC_TOPIC,
    REPORT,
    START_TOPIC,
    SUGGEST,
    SUGGESTIONS,
    Decision,
    Pair,
    Payload,
    Setting,
)
from workflow.people import holders
from workflow.texts import label

LIST_SIZE = 8
SUGGESTIONS_SIZE = 5
#: A suggestion's text in a list is cut here (the whole text is on the topic's page).
EXCERPT = 120


def public_button(key: str, payload: str) -> Button:
    return Button(SAY.label("buttons_public", key), payload)


def _id(row: Topic | Room | Suggestion) -> int:
    assert row.id is not None
    return row.id


async def menu_buttons(conv: Conversation, room: Room) -> list[Button]:
    """For the room's menu: its publicized topics, when it has any."""
    found = await pt.public_topics(conv.session, _id(room), limit=1)
    return [public_button("browse", PUBLIC_LIST.build(Pair(_id(room), 1)))] if found.total else []


async def browse(conv: Conversation, page: Pair) -> None:
    room = await conv.session.get(Room, page.first)
    if room is None:
        conv.reply(say("public", "room_gone"))
        return
    offset = (max(page.second, 1) - 1) * LIST_SIZE
    found = await pt.public_topics(conv.session, _id(room), offset=offset, limit=LIST_SIZE)
    following = await pt.follows_room(conv.session, _person(conv), _id(room))
    follow = public_button(
        "unfollow_room" if following else "follow_room",
        FOLLOW_ROOM.build(Setting(_id(room), not following)),
    )
    if not found.topics:
        conv.reply(say("public", "list_none", room=room.name), follow)
        return
    first = found.offset + 1
    title = say(
        "public",
        "list",
        room=room.name,
        total=found.total,
        first=first,
        last=found.offset + len(found.topics),
    )
    items = [
        Button(
            say("public", "list_item", title=t.title, state=label("states", t.state)),
            PUBLIC_TOPIC.build(_id(t)),
        )
        for t in found.topics
    ]
    more = []
    if found.more:
        next_page = Pair(_id(room), found.offset // LIST_SIZE + 2)
        more.append(Button(say("public", "next", more=found.more), PUBLIC_LIST.build(next_page)))
    conv.reply(title, *items, *more, follow)


def _person(conv: Conversation) -> int:
    assert conv.person.id is not None
    return conv.person.id


async def _public(conv: Conversation, topic_id: int) -> Topic | None:
    topic = await pt.public_topic(conv.session, topic_id=topic_id)
    if topic is None:
        conv.reply(say("public", "not_found"))
    return topic


async def view(conv: Conversation, topic: Topic, note: str = "") -> None:
    """The topic as the public sees it, with what this person may do on it."""
    topic_id = _id(topic)
    room = await conv.session.get(Room, topic.room_id)
    counts = await pt.counts(conv.session, topic_id)
    mine = await pt.stance(conv.session, _person(conv), topic_id)
    closes = pt.suggestions_close_at(topic)
    if pt.suggestions_open(topic, conv.now):
        window = say("public", "open_until", when=pt.when(closes)) if closes else ""
        window = window or say("public", "open")
    else:
        window = say("public", "closed")
    if held := await pt.held_of(conv.session, _person(conv), topic_id):
        window += "\n" + say("public", "own_held", count=held)
    text = say(
        "public",
        "view",
        state=label("states", topic.state),
        number=topic.number,
        title=topic.title,
        room=room.name if room else "",
        background=topic.background,
        likes=counts.likes,
        follows=counts.follows,
        suggestions=counts.suggestions,
        window=window,
    )
    if conv.public_base_url:  # the page: photos, the timeline, every suggestion
        text += "\n" + say(
            "public", "page", url=public_url(conv.public_base_url, topic.number, topic.state)
        )
    buttons = []
    if pt.suggestions_open(topic, conv.now):
        buttons.append(public_button("suggest", SUGGEST.build(topic_id)))
    buttons += [
        public_button(
            "unlike" if mine.liked else "like", LIKE.build(Setting(topic_id, not mine.liked))
        ),
        public_button(
            "unfollow" if mine.following else "follow",
            FOLLOW_TOPIC.build(Setting(topic_id, not mine.following)),
        ),
    ]
    if counts.suggestions:
        buttons.append(public_button("suggestions", SUGGESTIONS.build(Pair(topic_id, 1))))
    buttons.append(public_button("list", PUBLIC_LIST.build(Pair(topic.room_id, 1))))
    conv.reply(f"{note}\n\n{text}" if note else text, *buttons)


async def notify_offer(conv: Conversation, topic: Topic) -> str:
    """After a follow, like or suggestion on WeChat: a line linking to the topic page's
    "结果公布时通知我" (the subscription pop-up exists only on a page), unless no template is
    configured or the person has an unused consent a push about this topic would use."""
    template = conv.subscribe_template
    if conv.inbound.channel != WECHAT or not template or not conv.public_base_url:
        return ""
    page = public_url(conv.public_base_url, topic.number, topic.state)
    if not page or await has_open_consent(
        conv.session, conv.inbound.user_ref, template, _id(topic)
    ):
        return ""
    return "\n" + say("public", "notify_offer", url=f"{page}#notify")


async def open_topic(conv: Conversation, topic_id: int) -> None:
    if (topic := await _public(conv, topic_id)) is not None:
        await view(conv, topic)


async def start_topic(conv: Conversation, number: str) -> None:
    """A topic's deep link or code: the person arrives in its room, on the topic."""
    topic = await pt.public_topic(conv.session, number=number)
    conv.home()
    if topic is None:
        conv.reply(say("public", "not_found"), public_button("menu", Payload.MENU))
        return
    room = await conv.session.get(Room, topic.room_id)
    if room is not None:
        conv.data["room"] = room.code
    await view(conv, topic)


async def like(conv: Conversation, setting: Setting) -> None:
    if (topic := await _public(conv, setting.id)) is None:
        return
    try:
        changed = await pt.set_like(conv.session, _person(conv), topic, setting.on, conv.now)
    except WorkflowError as refusal:
        conv.reply(refusal.message)
        return
    key = ("liked" if changed else "liked_already") if setting.on else "unliked"
    offer = await notify_offer(conv, topic) if setting.on else ""
    await view(conv, topic, say("public", key) + offer)


async def follow_topic(conv: Conversation, setting: Setting) -> None:
    """关注 / 取消关注: from the topic's view, or the off-button of any push."""
    topic = await conv.session.get(Topic, setting.id)
    if topic is None:
        conv.reply(say("public", "not_found"))
        return
    try:
        await pt.set_follow_topic(conv.session, _person(conv), topic, setting.on, conv.now)
    except WorkflowError as refusal:
        conv.reply(refusal.message)
        return
    if await pt.public_topic(conv.session, topic_id=setting.id) is not None:
        note = say("public", "followed" if setting.on else "unfollowed", title=topic.title)
        if setting.on:
            note += await notify_offer(conv, topic)
        await view(conv, topic, note)
    else:
        # Not public (yet: followed from a similar-topic hint): nothing more to show, not
        # even its title, which a forged button must not learn.
        again = FOLLOW_TOPIC.build(Setting(setting.id, not setting.on))
        note = say("public", "followed_unnamed" if setting.on else "unfollowed_unnamed")
        conv.reply(note, public_button("unfollow" if setting.on else "follow", again))


async def follow_room(conv: Conversation, setting: Setting) -> None:
    room = await conv.session.get(Room, setting.id)
    if room is None:
        conv.reply(say("public", "room_gone"))
        return
    await pt.set_follow_room(conv.session, _person(conv), room, setting.on, conv.now)
    again = FOLLOW_ROOM.build(Setting(setting.id, not setting.on))
    conv.reply(
        say("public", "room_followed" if setting.on else "room_unfollowed", room=room.name),
        public_button("unfollow_room" if setting.on else "follow_room", again),
        public_button("list", PUBLIC_LIST.build(Pair(setting.id, 1))),
    )


async def suggestions(conv: Conversation, page: Pair) -> None:
    """A page of the topic's visible suggestions, each with its 举报 button."""
    if (topic := await _public(conv, page.first)) is None:
        return
    offset = (max(page.second, 1) - 1) * SUGGESTIONS_SIZE
    shown = await pt.visible_suggestions(
        conv.session, _id(topic), limit=SUGGESTIONS_SIZE + 1, offset=offset
    )
    more, shown = len(shown) > SUGGESTIONS_SIZE, shown[:SUGGESTIONS_SIZE]
    if not shown:
        conv.reply(
            say("public", "suggestions_none"), public_button("back", PUBLIC_TOPIC.build(_id(topic)))
        )
        return
    lines = [say("public", "suggestions_title", title=topic.title)]
    buttons = []
    for n, s in enumerate(shown, offset + 1):
        local = s.created_at.astimezone(CHINA)
        body = s.body if len(s.body) <= EXCERPT else s.body[:EXCERPT] + "…"
        lines.append(say("public", "suggestion", n=n, body=body, month=local.month, day=local.day))
        if s.person_id != conv.person.id:
            buttons.append(Button(say("public", "report_button", n=n), REPORT.build(_id(s))))
    if more:
        buttons.append(public_button("more", SUGGESTIONS.build(Pair(_id(topic), page.second + 1))))
    buttons.append(public_button("back", PUBLIC_TOPIC.build(_id(topic))))
    conv.reply("\n".join(lines), *buttons)


async def report(conv: Conversation, suggestion_id: int) -> None:
    row = await conv.session.get(Suggestion, suggestion_id)
    topic = await pt.public_topic(conv.session, topic_id=row.topic_id) if row else None
    if row is None or topic is None:
        conv.reply(say("public", "suggestion_gone"))
        return
    already = await pt.has_reported(conv.session, _person(conv), suggestion_id)
    try:
        fresh = await pt.report(conv.session, _person(conv), suggestion_id, conv.now)
    except WorkflowError as refusal:
        conv.reply(refusal.message, public_button("back", PUBLIC_TOPIC.build(_id(topic))))
        return
    if fresh.hidden_by_reports:
        await tell_conveners(conv, topic, fresh, "reported_notice")
    conv.reply(
        say("public", "reported_already" if already else "reported"),
        public_button("back", PUBLIC_TOPIC.build(_id(topic))),
    )


async def tell_conveners(conv: Conversation, topic: Topic, s: Suggestion, what: str) -> None:
    """The room's conveners have a suggestion to decide on (held, or hidden by reports).
    Keyed per suggestion and decision round, so retries and further reports tell once."""
    text = say(
        "moderation",
        what,
        title=topic.title,
        number=topic.number,
        body=s.body,
        word=s.matched or "",
        count=pt.REPORTS_TO_HIDE,
    )
    round_ = s.moderated_at.isoformat() if s.moderated_at else "0"
    handle = (SAY.label("buttons_public", "decide"), MODERATE.build(Decision(_id(s), "")))
    for convener in await holders(conv.session, topic.room_id, [Role.CONVENER]):
        await conv.tell(
            convener,
            f"suggestion.{what}:{_id(s)}:{round_}:{convener}",
            text,
            kind=f"suggestion.{what}",
            buttons=[handle],
            topic_id=topic.id,
        )


HANDLERS = Handlers(
    "public_topics",
    commands=[on(FOLLOW_TOPIC, follow_topic), on(FOLLOW_ROOM, follow_room)],
    buttons=[
        on(PUBLIC_LIST, browse),
        on(PUBLIC_TOPIC, open_topic),
        on(LIKE, like),
        on(SUGGESTIONS, suggestions),
        on(REPORT, report),
    ],
    starts=[on(START_TOPIC, start_topic)],
)
