"""Arriving: a room's code (or a search by name) opens that room's welcome and menu."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs import submit_topic
from dialogs.conversation import HOME, Conversation, button, say
from dialogs.types import Button, room_from_payload
from storage.models import Room

SEARCH_RESULTS = 5
#: Room names are short; a longer text is not a search (and would strain LIKE).
SEARCH_MAX = 30


async def welcome(conv: Conversation, room: Room) -> None:
    conv.home()
    conv.data["room"] = room.code
    conv.reply(say("home", "welcome", room=room.name), *await menu_buttons(conv))


async def menu_buttons(conv: Conversation) -> list[Button]:
    """The menu; members, Party secretaries and grid workers of the room also get their way
    of raising topics, and people who review (any role) their to-do list."""
    actor, room = await conv.actor(), await conv.room()
    reviewer = [button("todo", "m:todo")] if actor.grants else []
    sources = submit_topic.source_buttons(actor, room) if room is not None else []
    return [
        button("submit", "m:submit"),
        *sources,
        button("mine", "m:mine"),
        *reviewer,
        button("change_room", "m:room"),
    ]


async def start(conv: Conversation) -> None:
    """A scan of a room's code, a /start link, or a plain follow."""
    code = room_from_payload(conv.inbound.payload)
    room = await conv.find_room(code) if code else None
    if room is not None:
        await welcome(conv, room)
    elif code:
        conv.home()
        conv.goto(HOME, "search")
        conv.reply(say("home", "room_unknown"))
    else:
        await menu(conv)


async def menu(conv: Conversation) -> None:
    room = await conv.room()
    if room is None:
        conv.goto(HOME, "search")
        conv.reply(say("common", "choose_room_first"))
    else:
        conv.reply(say("home", "welcome", room=room.name), *await menu_buttons(conv))


async def choose_room(conv: Conversation) -> None:
    conv.goto(HOME, "search")
    conv.reply(say("common", "choose_room_first"))


async def on_message(conv: Conversation) -> bool:
    """Searching for a room and picking one; False if the message is not for this flow."""
    inbound = conv.inbound
    if inbound.kind == "button" and inbound.payload.startswith("room:"):
        room = await conv.find_room(inbound.payload.removeprefix("room:"))
        if room is None:
            conv.reply(say("home", "room_unknown"))
        else:
            await welcome(conv, room)
        return True
    if inbound.kind == "text" and (conv.state.step == "search" or "room" not in conv.data):
        await search(conv, inbound.text.strip())
        return True
    return False


async def search(conv: Conversation, query: str) -> None:
    conv.goto(HOME, "search")
    if not query:
        conv.reply(say("common", "choose_room_first"))
        return
    if len(query) > SEARCH_MAX:
        conv.reply(say("common", "too_long", limit=SEARCH_MAX, length=len(query)))
        return
    rooms = await find_rooms(conv.session, query, SEARCH_RESULTS)
    if not rooms:
        conv.reply(say("home", "room_not_found", query=query))
        return
    conv.reply(say("home", "room_found"), *[button_for_room(room) for room in rooms])


def button_for_room(room: Room) -> Button:
    return Button(room.name, f"room:{room.code}")


async def find_rooms(session: AsyncSession, query: str, limit: int) -> list[Room]:
    """Rooms whose name contains ``query`` (LIKE wildcards in it are taken literally)."""
    pattern = "%" + query[:SEARCH_MAX].replace("\\", "").replace("%", "").replace("_", "") + "%"
    rooms = await session.exec(
        select(Room).where(col(Room.name).like(pattern)).order_by(Room.code).limit(limit)
    )
    return list(rooms)
