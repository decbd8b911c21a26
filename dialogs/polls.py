"""Screening polls in the chat: the convener starts one (发起投票: pick the room's
publicized topics, then the closing time), residents vote (``pv:<poll>:<option>``) and,
once it has closed, see the result (``pv:<poll>:0``). While it is open nobody sees how
the votes stand (workflow/polls.py).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from dialogs.conversation import Conversation, say
from dialogs.handlers import Flow, Handlers, on
from dialogs.types import Button
from storage.models import Room
from storage.participation import Poll
from workflow import participation as pt
from workflow import polls
from workflow.clock import CHINA
from workflow.errors import InvalidField, WorkflowError
from workflow.payloads import POLL_PICK, POLL_VOTE, Pair, Payload
from workflow.permissions import may_run_poll

NAME = "polls"
WORDS = {"发起投票", "/poll"}
_DAYS = re.compile(r"(\d{1,2})\s*天?")


async def menu_buttons(conv: Conversation, room: Room) -> list[Button]:
    """For the room's menu: its open poll; for its convener, 发起投票 when there are
    enough publicized topics to choose from."""
    assert room.id is not None
    found: list[Button] = []
    poll = await polls.open_poll(conv.session, room.id, conv.now)
    if poll is not None and poll.id is not None:
        found.append(Button(say("polls", "menu_vote"), POLL_VOTE.build(Pair(poll.id, 0))))
    if may_run_poll(await conv.actor(), room.id):
        listed = await pt.public_topics(conv.session, room.id, limit=1)
        if listed.total >= polls.MIN_OPTIONS:
            found.append(Button(say("polls", "menu_start"), Payload.MENU_POLL))
    return found


async def begin(conv: Conversation) -> None:
    room = await conv.room()
    if room is None or room.id is None:
        conv.choose_room()
        return
    if not may_run_poll(await conv.actor(), room.id):
        conv.reply(say("polls", "not_permitted"))
        return
    conv.home()
    conv.data[NAME] = {"picked": []}
    conv.goto(NAME, "pick")
    await _offer(conv, room)


async def _offer(conv: Conversation, room: Room) -> None:
    assert room.id is not None
    listed = await pt.public_topics(conv.session, room.id, limit=polls.MAX_OPTIONS * 2)
    picked = set(conv.data[NAME]["picked"])
    conv.reply(
        say("polls", "pick", room=room.name, low=polls.MIN_OPTIONS, high=polls.MAX_OPTIONS),
        *[
            Button(("✓ " if t.id in picked else "") + t.title, POLL_PICK.build(t.id or 0))
            for t in listed.topics
        ],
        Button(say("polls", "done"), Payload.POLL_DONE),
    )


async def pick(conv: Conversation, topic_id: int) -> None:
    room = await conv.room()
    if room is None:
        conv.choose_room()
        return
    picked: list[int] = conv.data[NAME]["picked"]
    if topic_id in picked:
        picked.remove(topic_id)
    elif len(picked) < polls.MAX_OPTIONS:
        picked.append(topic_id)
    await _offer(conv, room)


async def done(conv: Conversation) -> None:
    if len(conv.data[NAME]["picked"]) < polls.MIN_OPTIONS:
        conv.reply(say("polls", "too_few", low=polls.MIN_OPTIONS))
        return
    conv.goto(NAME, "closes")
    conv.reply(say("polls", "ask_closes"))


def parse_closes(typed: str, now: datetime) -> datetime | None:
    """``7`` / ``7天``: that many days from now; ``2026-03-09 18:00``: then (China time)."""
    typed = typed.strip()
    if (days := _DAYS.fullmatch(typed)) is not None:
        return now + timedelta(days=int(days.group(1)))
    try:
        moment = datetime.fromisoformat(typed)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA)


async def step(conv: Conversation) -> None:
    """The flow's every message: a topic picked, 完成, or the closing time typed."""
    inbound = conv.inbound
    if inbound.kind == "button" and conv.state.step == "pick":
        if inbound.payload == Payload.POLL_DONE:
            await done(conv)
            return
        if (topic_id := POLL_PICK.parse(inbound.payload)) is not None:
            await pick(conv, topic_id)
            return
    if conv.state.step != "closes" or inbound.kind != "text":
        conv.reply(say("polls", "use_buttons"))
        return
    closes = parse_closes(conv.inbound.text, conv.now)
    room = await conv.room()
    if closes is None or room is None:
        conv.reply(say("polls", "bad_closes"))
        return
    try:
        poll = await polls.create_poll(
            conv.session,
            await conv.actor(),
            room,
            say("polls", "title", room=room.name),
            conv.data[NAME]["picked"],
            closes,
            conv.now,
            lifecycle=conv.lifecycle,
        )
    except InvalidField as refusal:
        conv.reply(refusal.message)
        return
    except WorkflowError as refusal:
        conv.home()
        conv.reply(refusal.message)
        return
    conv.home()
    assert poll.id is not None
    conv.reply(
        say("polls", "created", when=polls.when(poll.closes_at)),
        Button(say("polls", "menu_vote"), POLL_VOTE.build(Pair(poll.id, 0))),
    )


async def show(conv: Conversation, poll: Poll, note: str = "") -> None:
    assert poll.id is not None and conv.person.id is not None
    head = f"{note}\n\n" if note else ""
    if not polls.is_open(poll, conv.now):
        tallies = await polls.results(conv.session, poll, conv.now)
        lines = [
            say("polls", "result_item", n=n, title=t.option.title, votes=t.votes)
            for n, t in enumerate(tallies, 1)
        ]
        total = sum(t.votes for t in tallies)
        conv.reply(
            head + say("polls", "result", title=poll.title, total=total, items="\n".join(lines))
        )
        return
    options = await polls.options(conv.session, poll.id)
    mine = await polls.my_vote(conv.session, conv.person.id, poll.id)
    if mine is not None:
        chosen = next((o.title for o in options if o.id == mine), "")
        conv.reply(head + say("polls", "voted", title=chosen, when=polls.when(poll.closes_at)))
        return
    conv.reply(
        head + say("polls", "ballot", title=poll.title, when=polls.when(poll.closes_at)),
        *[Button(o.title, POLL_VOTE.build(Pair(poll.id, o.id))) for o in options],
    )


async def vote(conv: Conversation, choice: Pair) -> None:
    poll = await conv.session.get(Poll, choice.first)
    if poll is None:
        conv.reply(say("polls", "not_found"))
        return
    if choice.second == 0:
        await show(conv, poll)
        return
    assert conv.person.id is not None
    try:
        await polls.vote(conv.session, conv.person.id, poll.id or 0, choice.second, conv.now)
    except WorkflowError as refusal:
        await show(conv, poll, refusal.message)
        return
    await show(conv, poll)


HANDLERS = Handlers(
    NAME,
    commands=[on(Payload.MENU_POLL, begin)],
    buttons=[on(POLL_VOTE, vote)],
    words=dict.fromkeys(WORDS, begin),
    flows={NAME: Flow(step, answers=(POLL_PICK, Payload.POLL_DONE))},
)
