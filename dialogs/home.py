"""Arriving: a room's code (or a search by name) opens that room's welcome and menu."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs.conversation import HOME, Conversation, button, say
from dialogs.handlers import Handlers, on
from dialogs.moderation import pending_button
from dialogs.polls import menu_buttons as poll_buttons
from dialogs.public_topics import menu_buttons as public_buttons
from dialogs.sources import source_buttons
from dialogs.types import Button
from storage.models import Room
from workflow.payloads import ROOM, START_PLAIN, START_ROOM, Payload

#: Typed anywhere, these open the menu.
MENU_WORDS = {"菜单", "帮助", "/help", "/menu"}

SEARCH_RESULTS = 5
#: Room names are short; a longer text is not a search (and would strain LIKE).
SEARCH_MAX = 30


async def welcome(conv: Conversation, room: Room) -> None:
    conv.home()
    conv.data["room"] = room.code
    conv.reply(say("home", "welcome", room=room.name), *await menu_buttons(conv))


async def menu_buttons(conv: Conversation) -> list[Button]:
    """The menu; members, Party secretaries and grid workers of the room also get their way
    of raising topics, and people who review (any role) their to-do list. A room with
    publicized topics offers them; a convener with suggestions to decide, those."""
    actor, room = await conv.actor(), await conv.room()
    reviewer = [button("todo", Payload.MENU_TODO)] if actor.grants else []
    sources = source_buttons(actor, room) if room is not None else []
    public = [*await public_buttons(conv, room), *await poll_buttons(conv, room)] if room else []
    held = await pending_button(conv) if actor.grants else []
    return [
        button("submit", Payload.MENU_SUBMIT),
        *sources,
        *public,
        button("mine", Payload.MENU_MINE),
        *reviewer,
        *held,
        button("change_room", Payload.MENU_ROOM),
    ]


async def start_in_room(conv: Conversation, code: str) -> None:
    """A scan of a room's code or its /start link."""
    room = await conv.find_room(code)
    if room is not None:
        await welcome(conv, room)
    else:
        conv.home()
        conv.goto(HOME, "search")
        conv.reply(say("home", "room_unknown"))


async def start(conv: Conversation, payload: str) -> None:
    """A plain follow, /start alone, or a start payload no longer made."""
    await menu(conv)


async def open_menu(conv: Conversation) -> None:
    """菜单, wherever the person is: leaves any dialog."""
    conv.home()
    await menu(conv)


async def menu(conv: Conversation) -> None:
    room = await conv.room()
    if room is None:
        conv.choose_room()
    else:
        conv.reply(say("home", "welcome", room=room.name), *await menu_buttons(conv))


async def choose_room(conv: Conversation) -> None:
    conv.choose_room()


async def pick_room(conv: Conversation, code: str) -> None:
    """A room found by a search, pressed."""
    room = await conv.find_room(code)
    if room is None:
        conv.reply(say("home", "room_unknown"))
    else:
        await welcome(conv, room)


async def searching(conv: Conversation) -> bool:
    """What is typed at home while searching, or anywhere without a room yet, is a room's
    name or code; False for anything else."""
    inbound = conv.inbound
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
    return Button(room.name, ROOM.build(room.code))


async def find_rooms(session: AsyncSession, query: str, limit: int) -> list[Room]:
    """Rooms whose name contains ``query`` (LIKE wildcards in it are taken literally)."""
    pattern = "%" + query[:SEARCH_MAX].replace("\\", "").replace("%", "").replace("_", "") + "%"
    rooms = await session.exec(
        select(Room).where(col(Room.name).like(pattern)).order_by(Room.code).limit(limit)
    )
    return list(rooms)


HANDLERS = Handlers(
    "home",
    commands=[on(Payload.MENU, open_menu), on(Payload.MENU_ROOM, choose_room)],
    buttons=[on(ROOM, pick_room)],
    words=dict.fromkeys(MENU_WORDS, open_menu),
    starts=[on(START_ROOM, start_in_room), on(START_PLAIN, start)],
    fallback=searching,
)
