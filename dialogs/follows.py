"""The pushes' unfollow buttons: ``ft:<topic_id>:0`` (a topic's push) and ``fr:<room_id>:0``
(a room's daily digest) end the person's follow; a second press says so and changes
nothing.

Local to the pushes until the participation dialogs (关注 / 取消关注 from a topic, which
own these payload kinds there) land on main: then their handlers replace this module.
"""

from __future__ import annotations

from dialogs.conversation import Conversation, say
from dialogs.handlers import Handlers, on
from storage.models import Room, Topic
from workflow.follows import Subject, stop_following
from workflow.payloads import FOLLOW_ROOM, FOLLOW_TOPIC, FollowChoice


async def _unfollow(conv: Conversation, subject: Subject, choice: FollowChoice) -> None:
    if choice.on is not False:  # following from a push is the participation dialogs' part
        conv.reply(say("common", "stale_button"))
        return
    found: Topic | Room | None
    if subject == "topic":
        found = await conv.session.get(Topic, choice.subject_id)
    else:
        found = await conv.session.get(Room, choice.subject_id)
    if found is None:
        conv.reply(say("common", "stale_button"))
        return
    name = found.title if isinstance(found, Topic) else found.name
    changed = await stop_following(
        conv.session, conv.person.id, subject, choice.subject_id, conv.now
    )
    conv.reply(say("follows", "unfollowed" if changed else "not_following", name=name))


async def unfollow_topic(conv: Conversation, choice: FollowChoice) -> None:
    await _unfollow(conv, "topic", choice)


async def unfollow_room(conv: Conversation, choice: FollowChoice) -> None:
    await _unfollow(conv, "room", choice)


HANDLERS = Handlers(
    "follows",
    buttons=[on(FOLLOW_TOPIC, unfollow_topic), on(FOLLOW_ROOM, unfollow_room)],
)
