"""Which sources of 提议题 (dialogs/submit_topic.py) a person is offered in the chat: the
menu buttons of the ones they may use in their room, and the refusal of one they may not."""

from __future__ import annotations

from dialogs.conversation import Conversation, button, say
from dialogs.types import Button
from storage.models import Room
from workflow.lifecycle import SOURCE_ROLES, Source
from workflow.payloads import Payload
from workflow.permissions import Actor, source_role
from workflow.texts import label

#: The menu button of each source that needs a role (labels in zh_CN.toml [buttons]).
SOURCE_BUTTONS = {
    Source.MEMBER: Payload.MENU_MEMBER,
    Source.PARTY: Payload.MENU_PARTY,
    Source.GRID: Payload.MENU_GRID,
}


def offered(actor: Actor, room: Room, source: Source) -> bool:
    """May ``actor`` use ``source`` in ``room`` from the chat? (Only a role held in that very
    room counts; the lifecycle checks again when the topic is opened.)"""
    assert room.id is not None
    return source_role(actor, source, [room.id], admin=False) is not None


def source_buttons(actor: Actor, room: Room) -> list[Button]:
    """The menu buttons of the sources ``actor`` may use in ``room``."""
    return [
        button(source.value, payload)
        for source, payload in SOURCE_BUTTONS.items()
        if offered(actor, room, source)
    ]


async def refuse(conv: Conversation, room: Room, source: Source) -> None:
    """Say (and audit) that ``source`` is not the person's to use in ``room``, naming the
    roles that may, with the button of the one everybody may use."""
    allowed = SOURCE_ROLES[source] or frozenset()
    await conv.refuse(
        "source.refused",
        say(
            "sources",
            "not_permitted",
            source=label("sources", source),
            room=room.name,
            roles="、".join(label("roles", r) for r in sorted(allowed)),
        ),
        button("submit", Payload.MENU_SUBMIT),
        source=str(source),
        room=room.code,
    )
