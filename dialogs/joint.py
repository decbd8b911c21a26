"""Joint recommendations (联名荐题) in the chat: the invitation, a co-signer's answer and
what each is told. The rules (who may answer, in which state, what an answer does) are
workflow/joint.py's; this module parses, calls it and says the outcome.

On confirming, the draft is set aside as a pending recommendation and each co-signer gets a
message with 确认联名 / 不联名 buttons (through the outbox, on the chat they used last). A
button carries only the pending recommendation's random token. The last 确认联名 opens the
topic (as the member who recommended it, with the co-signers recorded in the event's fields
and the topic's facts); one 不联名 ends it without a topic. Refusals change nothing but an
audit row.
"""

from __future__ import annotations

from typing import Any

from dialogs.conversation import Conversation, say
from dialogs.drafts import names_of, open_draft, receipt
from dialogs.handlers import Handlers, on
from storage.models import JointRecommendation, Room
from workflow import joint
from workflow.errors import WorkflowError
from workflow.payloads import JOINT, JointAnswer
from workflow.permissions import load_actor


async def invite(conv: Conversation, room: Room, draft: dict[str, Any]) -> None:
    """Set the draft aside and ask each co-signer; tell the member who recommended it."""
    assert conv.person.id is not None
    row = joint.start(
        conv.session, room=room, initiator_id=conv.person.id, draft=draft, now=conv.now
    )
    token, cosigners = row.token, joint.cosigners(row)
    text = say(
        "joint",
        "invitation",
        name=conv.person.display_name or say("joint", "someone"),
        room=room.name,
        title=draft["title"],
        description=draft["description"],
        days=joint.ANSWER_DAYS,
    )
    buttons = [
        (say("joint", "yes_button"), JOINT.build(JointAnswer(token, agrees=True))),
        (say("joint", "no_button"), JOINT.build(JointAnswer(token, agrees=False))),
    ]
    for pid in cosigners:
        await conv.tell(pid, f"joint:{token}:invite:{pid}", text, kind="joint", buttons=buttons)
    names = await names_of(conv.session, cosigners)
    conv.reply(say("joint", "asked", count=len(cosigners), names="、".join(names)))


async def answer(conv: Conversation, pressed: JointAnswer) -> None:
    """A co-signer's answer (a garbled one is refused as forged)."""
    row = await joint.find(conv.session, pressed.token) if pressed.token else None
    try:
        answered = await joint.answer(
            conv.session, row, await conv.actor(), pressed.agrees, conv.now
        )
    except joint.JointRefused as refusal:
        await conv.refuse("joint.refused", refusal.message, reason=refusal.reason)
        return
    assert row is not None
    if answered.declined:
        await _declined(conv, row)
    elif answered.complete:
        await _open(conv, row)
    else:
        conv.reply(say("joint", "confirmed_waiting", count=answered.waiting))


async def _declined(conv: Conversation, row: JointRecommendation) -> None:
    title = row.data["draft"]["title"]
    conv.reply(say("joint", "declined_you", title=title))
    text = say(
        "joint", "declined", name=conv.person.display_name or say("joint", "someone"), title=title
    )
    for pid in _others(conv, row):
        await conv.tell(pid, f"joint:{row.token}:declined:{pid}", text, kind="joint")


async def _open(conv: Conversation, row: JointRecommendation) -> None:
    data = row.data
    room = await conv.find_room(data["room"])
    initiator = int(data["initiator"])
    try:
        if room is None:  # the room was removed meanwhile
            raise WorkflowError("joint_room_gone")
        topic = await open_draft(
            conv.session,
            conv.lifecycle,
            room=room,
            actor=await load_actor(conv.session, initiator),
            draft=data["draft"],
            uploader_id=initiator,
            fields={"cosigners": joint.cosigners(row)},
        )
    except WorkflowError as refusal:  # e.g. the recommending member lost the role
        joint.failed(row, conv.now)
        why = say("joint", "failed", reason=refusal.message)
        conv.reply(why)
        await conv.tell(initiator, f"joint:{row.token}:failed", why, kind="joint")
        return
    assert topic.id is not None
    joint.opened(row, topic.id, conv.now)
    conv.reply(say("joint", "opened_you", number=topic.number, title=topic.title))
    await conv.tell(
        initiator,
        f"joint:{row.token}:opened",
        say("joint", "opened") + "\n" + receipt(topic, room),
        kind="joint",
        topic_id=topic.id,
    )


def _others(conv: Conversation, row: JointRecommendation) -> list[int]:
    """Everyone in the recommendation but the person answering now."""
    everyone = [int(row.data["initiator"]), *joint.cosigners(row)]
    return [pid for pid in dict.fromkeys(everyone) if pid != conv.person.id]


HANDLERS = Handlers("joint", buttons=[on(JOINT, answer)])
