"""Reviewing in the chat: a card's button → the fields the step needs → ``apply``.

A button carries only a ``ButtonRef`` token (workflow/cards.py). Every press is checked
again: the button must be this person's, unused, made for the topic's current version, and
the action still allowed for their role in the topic's current state. Refusals change
nothing but an audit row. The fields the step needs are asked one by one (choices and
rooms as buttons, text typed), then the lifecycle decides.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from dialogs import meeting_time, research, uploads
from dialogs.conversation import SAY, Conversation, say
from dialogs.handlers import Flow, Handlers, on
from dialogs.home import find_rooms
from dialogs.types import Button
from storage.models import Attachment, Room, Topic
from workflow.cards import action_buttons, card_text
from workflow.clock import CHINA
from workflow.errors import InvalidField, NotPermitted, WorkflowError
from workflow.fields import default_date, shown_photos, url_field
from workflow.lifecycle import CATEGORIES, CONSULTATION, FIELDS, TRANSITIONS
from workflow.payloads import CARD, REVIEW, REVIEW_CHOICE, REVIEW_ROOM, TODO_PAGE, Payload
from workflow.permissions import visible_topic
from workflow.refs import RefRefusal, check_ref, find_ref, use_ref
from workflow.rooms import nearby_rooms
from workflow.texts import by_day, label
from workflow.todo import todo_page
from workflow.waiting import review_wait

NAME = "review"
PENDING_WORDS = {"待办", "/todo"}
PENDING_SIZE = 10
ROOM_CHOICES = 8


async def show_card(conv: Conversation, topic_id: int) -> None:
    actor = await conv.actor()
    topic = await visible_topic(conv.session, actor, topic_id)
    if topic is None:
        conv.reply(say("review", "not_found"))
        return
    buttons = await action_buttons(conv.session, topic, actor, conv.now)
    conv.reply(
        await card_text(conv.session, topic, conv.lifecycle.calendar, conv.now),
        *[Button(text, payload) for text, payload in buttons],
    )


async def todo(conv: Conversation, page: int = 1) -> None:
    """Open items this person can act on, most urgent first, a page at a time; the last
    button goes to the next page and says how many are left."""
    actor = await conv.actor()
    offset = (page - 1) * PENDING_SIZE
    found = await todo_page(conv.session, actor, offset=offset, limit=PENDING_SIZE)
    if not found.topics:
        conv.reply(say("review", "todo_none"))
        return
    first, last = found.offset + 1, found.offset + len(found.topics)
    title = say("review", "todo_title", total=found.total, first=first, last=last)
    more = []
    if found.more:
        title += say("review", "todo_more", more=found.more)
        next_page = found.offset // PENDING_SIZE + 2
        more.append(Button(say("review", "todo_next", more=found.more), TODO_PAGE.build(next_page)))
    conv.reply(
        title,
        *[
            Button(
                say(
                    "review",
                    "todo_item",
                    title=t.title,
                    state=label("states", t.state),
                    due=_due(conv, t),
                ),
                CARD.build(_id(t)),
            )
            for t in found.topics
        ],
        *more,
    )


async def todo_later(conv: Conversation, page: int) -> None:
    await todo(conv, max(page, 1))


async def press(conv: Conversation, token: str) -> None:
    ref = await find_ref(conv.session, token)
    refusal = await check_ref(conv.session, ref, conv.person.id)
    if refusal is not None:
        await conv.refuse(
            "button.refused",
            _refused(refusal),
            reason=refusal.reason,
            topic_id=ref.topic_id if ref else None,
            button_action=ref.action if ref else None,
        )
        return
    assert ref is not None
    conv.state.data = {
        **({"room": conv.data["room"]} if "room" in conv.data else {}),
        NAME: {
            "token": token,
            "topic": ref.topic_id,
            "action": ref.action,
            "version": ref.topic_version,
            "fields": {},
        },
    }
    conv.goto(NAME, "collect")
    await _next(conv)


def _refused(refusal: RefRefusal) -> str:
    """The shared checks (workflow/refs.py), phrased for the chat."""
    return say("review", refusal.reason, state=refusal.state, action=refusal.action)


def _review(conv: Conversation) -> dict[str, Any]:
    return conv.data[NAME]


async def _next(conv: Conversation) -> None:
    """Ask for the next field the step needs, or take the step."""
    review = _review(conv)
    transition = TRANSITIONS[review["action"]]
    for name in (*transition.required, *transition.optional):
        if name not in review["fields"]:
            await _ask(conv, name, optional=name not in transition.required)
            return
    await _apply(conv)


async def _ask(conv: Conversation, name: str, *, optional: bool) -> None:
    review = _review(conv)
    review["asking"] = name
    spec, field = FIELDS[name], label("fields", name)
    skip = [Button(SAY.label("buttons_review", "skip"), Payload.REVIEW_SKIP)] if optional else []
    if spec.kind == "photos":
        photos = await _photos(conv)
        if not photos:  # nothing to choose from: none shown, nothing asked
            review["fields"][name] = None
            await _next(conv)
            return
        picked = review.setdefault("picked", [])
        conv.reply(
            say("review", "ask_photos", field=field, count=len(photos)),
            *[
                Button(
                    say("review", "photo_on" if p in picked else "photo_off", n=i + 1),
                    REVIEW_CHOICE.build(i),
                )
                for i, p in enumerate(photos)
            ],
            Button(SAY.label("buttons_review", "photos_done"), Payload.REVIEW_DONE),
            Button(SAY.label("buttons_review", "photos_none"), Payload.REVIEW_SKIP),
        )
        return
    if spec.kind == "uploads":  # photos sent in the chat (dialogs/uploads.py)
        uploads.ask(conv, review, name)
        return
    if spec.default_days and optional:  # "skip" takes the default: say which day
        day = default_date(name, conv.now)
        skip = [
            Button(
                say("review", "take_default", month=day.month, day=day.day, days=spec.default_days),
                Payload.REVIEW_SKIP,
            )
        ]
    if spec.kind == "choice":
        conv.reply(
            say("review", "ask_choice", field=field),
            *[Button(c, REVIEW_CHOICE.build(i)) for i, c in enumerate(_choices(conv, name))],
            *skip,
        )
    elif spec.kind == "room":
        conv.reply(
            say("review", "ask_room", field=field),
            *[Button(r.name, REVIEW_ROOM.build(r.code)) for r in await _nearby(conv)],
            *skip,
        )
    elif spec.kind == "datetime":
        meeting_time.ask(conv)
    else:
        hint = say("review", "hint_date") if spec.kind == "date" else ""
        key = "ask_optional" if optional else "ask_text"
        offered = [
            Button(
                say("review", "preset_date", month=day.month, day=day.day, days=days),
                REVIEW_CHOICE.build(i),
            )
            for i, (days, day) in enumerate(_presets(conv, name))
        ]
        conv.reply(say("review", key, field=field) + hint, *offered, *skip)


async def answer(conv: Conversation) -> None:
    review, inbound = _review(conv), conv.inbound
    name = review.get("asking")
    if name is None:
        await _next(conv)
        return
    spec = FIELDS[name]
    payload = inbound.payload if inbound.kind == "button" else ""
    text = inbound.text.strip() if inbound.kind == "text" else ""
    value: Any = None
    choice = REVIEW_CHOICE.parse(payload)
    if payload == Payload.REVIEW_SKIP and name not in TRANSITIONS[review["action"]].required:
        review["fields"][name] = None
    elif spec.kind == "photos":
        await _pick_photo(conv, name, choice, done=payload == Payload.REVIEW_DONE)
        return
    elif spec.kind == "uploads":
        if await uploads.take(conv, review, name):
            await _next(conv)
        return
    elif spec.kind == "date" and choice is not None and choice < len(spec.presets):
        value = _presets(conv, name)[choice][1].isoformat()
    elif spec.kind == "choice" and choice is not None and choice < len(_choices(conv, name)):
        value = _choices(conv, name)[choice]
    elif spec.kind == "room" and REVIEW_ROOM.claims(payload):
        value = REVIEW_ROOM.parse(payload)
    elif spec.kind == "room" and text:
        await _search_rooms(conv, name, text)
        return
    elif spec.kind == "datetime" and payload == Payload.REVIEW_DONE:
        moment = meeting_time.confirmed(review)
        value = moment.isoformat() if moment else None
    elif spec.kind == "datetime" and text:
        await meeting_time.take(conv, review, text)  # refused or said back: asked at once
        return
    elif spec.kind == "url" and text:
        try:
            value = url_field(name, text)
        except InvalidField as refusal:
            conv.reply(refusal.message)
            await _ask(conv, name, optional=name not in TRANSITIONS[review["action"]].required)
            return
    elif spec.kind not in ("choice", "room") and text:
        value = text
    if (
        value is not None
        and review["action"] == "screen_accept"
        and name == "category"
        and value != CONSULTATION
    ):
        # Classified as one of the other four: not for consultation, so it is handled
        # outside it (非议事范围) — ask how it was handled and what the submitter was told.
        review["action"], review["fields"] = "redirect", {"kind": value}
        conv.reply(say("review", "not_consultation", category=value))
    elif value is not None:
        review["fields"][name] = value
    elif name not in review["fields"]:
        await _ask(conv, name, optional=name not in TRANSITIONS[review["action"]].required)
        return
    await _next(conv)


async def _photos(conv: Conversation) -> list[int]:
    topic = await conv.session.get(Topic, _review(conv)["topic"])
    assert topic is not None
    return [_id(a) for a in await shown_photos(conv.session, topic)]


async def _pick_photo(conv: Conversation, name: str, choice: int | None, *, done: bool) -> None:
    """A photo's button turns it on or off (the question is asked again, showing which are
    on); 确定 takes those chosen."""
    review = _review(conv)
    picked: list[int] = review.setdefault("picked", [])
    photos = await _photos(conv)
    if done:
        review["fields"][name] = [p for p in photos if p in picked] or None
        review.pop("picked", None)
        await _next(conv)
        return
    if choice is not None and choice < len(photos):
        photo = photos[choice]
        if photo in picked:
            picked.remove(photo)
        else:
            picked.append(photo)
    await _ask(conv, name, optional=True)


async def _nearby(conv: Conversation) -> list[Room]:
    topic = await conv.session.get(Topic, _review(conv)["topic"])
    assert topic is not None
    return await nearby_rooms(conv.session, topic.room_id, ROOM_CHOICES)


def _presets(conv: Conversation, name: str) -> list[tuple[int, date]]:
    """The dates a date field offers as buttons: (days after today, the day)."""
    today = conv.now.astimezone(CHINA).date()
    return [(days, today + timedelta(days=days)) for days in FIELDS[name].presets]


def _choices(conv: Conversation, name: str) -> tuple[str, ...]:
    """Accepting offers all five categories (the convener classifies every topic); only
    协商议事 goes on to the Party secretary, the others turn the step into a redirect."""
    if _review(conv)["action"] == "screen_accept" and name == "category":
        return CATEGORIES
    return FIELDS[name].choices


async def _apply(conv: Conversation) -> None:
    review = _review(conv)
    topic = await conv.session.get(Topic, review["topic"])
    assert topic is not None
    fields = {k: v for k, v in review["fields"].items() if v is not None}
    actor = await conv.actor()

    async def step() -> None:
        await conv.lifecycle.apply(conv.session, topic, review["action"], actor, **fields)

    ref = await find_ref(conv.session, review["token"])
    try:
        refusal = await use_ref(conv.session, ref, conv.person.id, conv.now, step)
    except InvalidField as refusal_:
        wrong = next(
            (n for n in review["fields"] if label("fields", n) == refusal_.params.get("field")),
            None,
        )
        conv.reply(refusal_.message)
        if wrong is None:  # not about one answer (e.g. the room): start the answers again
            review["fields"] = {}
        else:
            review["fields"].pop(wrong)
        await _next(conv)
        return
    except WorkflowError as refusal_:
        conv.home()
        conv.reply(refusal_.message)
        return
    if refusal is not None:
        conv.home()
        conv.reply(_late(refusal))
        return
    conv.home()
    done = say(
        "review",
        "done",
        action=label("actions", review["action"]),
        number=topic.number,
        title=topic.title,
        state=label("states", topic.state),
    )
    code = topic.facts.get("schedule_meeting", {}).get("code")
    if review["action"] == "schedule_meeting" and code:
        done += say("meeting", "scheduled", url=f"{conv.public_base_url.rstrip('/')}/m/{code}")
    conv.reply(done, *research.follow_ups(review["action"], _id(topic)))


def _late(refusal: RefRefusal) -> str:
    """A refusal once the fields are in: the role lost meanwhile is said as the lifecycle
    says it (as the step itself would have refused), the rest as for a press."""
    if refusal.reason == "not_permitted":
        return NotPermitted("not_permitted", action=refusal.action).message
    return _refused(refusal)


async def _search_rooms(conv: Conversation, name: str, query: str) -> None:
    found = await conv.find_room(query)
    rooms = [found] if found else await find_rooms(conv.session, query, ROOM_CHOICES)
    if not rooms:
        conv.reply(say("home", "room_not_found", query=query[:30]))
        return
    conv.reply(
        say("review", "ask_room", field=label("fields", name)),
        *[Button(r.name, REVIEW_ROOM.build(r.code)) for r in rooms],
    )


def _due(conv: Conversation, topic: Topic) -> str:
    """ "已等N个工作日，M月D日前" (or "已超期"), for the to-do list."""
    if topic.review_due_at is None:
        return ""
    calendar = conv.lifecycle.calendar
    wait = review_wait(calendar, topic.step_started_at, topic.review_due_at, conv.now)
    if wait.overdue:
        return say("review", "todo_overdue", waited=wait.waited)
    return say("review", "todo_due", by=by_day(wait.due_by), waited=wait.waited)


def _id(row: Topic | Attachment) -> int:
    assert row.id is not None
    return row.id


HANDLERS = Handlers(
    "review",
    commands=[
        on(REVIEW, press),
        on(CARD, show_card),
        on(Payload.MENU_TODO, todo),
        on(TODO_PAGE, todo_later),
    ],
    words=dict.fromkeys(PENDING_WORDS, todo),
    # A question asked is answered by whatever comes but a command or a word: a topic's
    # or a room's button pressed meanwhile asks the question again.
    flows={
        NAME: Flow(
            answer,
            modal=True,
            answers=(REVIEW_CHOICE, REVIEW_ROOM, Payload.REVIEW_SKIP, Payload.REVIEW_DONE),
        )
    },
)
