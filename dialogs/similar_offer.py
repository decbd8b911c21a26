"""提议题's "是不是这件事？": once a resident has typed a new topic's title, the open or
publicized topics nearby that read like it (workflow/duplicates.py), each with 关注 (any
open topic: its follower hears how it goes) and, once publicized, 点赞 (a like needs a
public topic), so that a duplicate becomes support for the topic already raised. The
buttons are the public's part (dialogs/public_topics.py answers them, wherever the
person is); the resident who finds none of them theirs simply goes on describing their own.

A topic not publicized yet is offered without its title: until publication it is the
submitter's and the reviewers' business (workflow/lifecycle.py PUBLIC_STATES), and typing
words into 提议题 must not become a way to read other residents' submissions. The resident
learns that a similar matter is being handled in which room, and may follow it.
"""

from __future__ import annotations

from dialogs.conversation import Conversation, say
from dialogs.types import Button
from workflow.duplicates import Offered, similar_open_topics
from workflow.payloads import FOLLOW_TOPIC, LIKE, Setting
from workflow.texts import label

#: How many similar topics are offered at most.
OFFERED = 3


async def offer(conv: Conversation, room_id: int, title: str) -> bool:
    """Reply with the similar topics of ``title``, if any; True if there were some."""
    found = await similar_open_topics(conv.session, room_id, title, OFFERED)
    if not found:
        return False
    conv.reply(_text(found), *_buttons(found))
    return True


def _text(found: list[Offered]) -> str:
    items = "\n".join(
        say(
            "similar",
            "item" if topic.public else "item_unpublished",
            n=n,
            title=topic.title if topic.public else "",
            room=topic.room,
            state=label("states", topic.state),
        )
        for n, topic in enumerate(found, 1)
    )
    public = any(topic.public for topic in found)
    return say("similar", "offer_with_likes" if public else "offer", items=items)


def _buttons(found: list[Offered]) -> list[Button]:
    buttons = []
    for n, topic in enumerate(found, 1):
        on = Setting(topic.topic_id, True)  # a set, not a flip: pressed twice, one follow
        buttons.append(Button(say("similar", "follow", n=n), FOLLOW_TOPIC.build(on)))
        if topic.public:
            buttons.append(Button(say("similar", "like", n=n), LIKE.build(on)))
    return buttons
