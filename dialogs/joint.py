"""Joint recommendations (联名荐题): a member's topic opens only once every co-signer agrees.

On confirming, the draft is set aside as a pending recommendation and each co-signer gets a
message with 确认联名 / 不联名 buttons (through the outbox, on the chat they used last). A
button carries only the pending recommendation's random token; every press is checked:
the presser must be one of its co-signers, answer once, still be a member of the room,
and the recommendation must still wait. The last 确认联名 opens the topic (as the member
who recommended it, with the co-signers recorded in the event's fields and the topic's
facts); one 不联名 ends it without a topic. Refusals change nothing but an audit row.

Pending recommendations are ``JointRecommendation`` rows, found by their token.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlmodel import select

from dialogs.conversation import Conversation, say
from dialogs.drafts import names_of, open_draft, receipt
from dialogs.handlers import Handlers, on
from storage.models import JointRecommendation, Room
from workflow.errors import WorkflowError
from workflow.lifecycle import Role
from workflow.payloads import JOINT, JointAnswer
from workflow.permissions import load_actor

#: How long co-signers have to answer.
ANSWER_DAYS = 7
WAITING, OPENED, DECLINED, FAILED = "waiting", "opened", "declined", "failed"
YES, NO = "yes", "no"


async def invite(conv: Conversation, room: Room, draft: dict[str, Any]) -> None:
    """Set the draft aside and ask each co-signer; tell the member who recommended it."""
    token = secrets.token_urlsafe(12)
    cosigners = [int(pid) for pid in draft["cosigners"]]
    conv.session.add(
        JointRecommendation(
            token=token,
            status=WAITING,
            data={
                "room": room.code,
                "initiator": conv.person.id,
                "draft": draft,
                "answers": {str(pid): None for pid in cosigners},
            },
            created_at=conv.now,
            updated_at=conv.now,
            expires_at=conv.now + timedelta(days=ANSWER_DAYS),
        )
    )
    text = say(
        "joint",
        "invitation",
        name=conv.person.display_name or say("joint", "someone"),
        room=room.name,
        title=draft["title"],
        description=draft["description"],
        days=ANSWER_DAYS,
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
    token = pressed.token
    pending = (
        await conv.session.exec(
            select(JointRecommendation).where(JointRecommendation.token == token).with_for_update()
        )
        if token and pressed.agrees is not None
        else None
    )
    row = pending.first() if pending is not None else None
    refusal = await _refusal(conv, row)
    if refusal is not None:
        await conv.refuse("joint.refused", refusal[1], reason=refusal[0])
        return
    assert row is not None
    data = dict(row.data)
    data["answers"] = {**data["answers"], str(conv.person.id): YES if pressed.agrees else NO}
    row.data, row.updated_at = data, conv.now  # a new dict: SQLAlchemy sees the change
    if not pressed.agrees:
        await _declined(conv, row)
    elif all(a == YES for a in data["answers"].values()):
        await _open(conv, row)
    else:
        waiting = sum(a is None for a in data["answers"].values())
        conv.reply(say("joint", "confirmed_waiting", count=waiting))


async def _refusal(conv: Conversation, row: JointRecommendation | None) -> tuple[str, str] | None:
    if row is None:
        return "forged", say("joint", "forged")
    answers = row.data["answers"]
    if str(conv.person.id) not in answers:
        return "not_addressed", say("joint", "not_addressed")
    if answers[str(conv.person.id)] is not None:
        return "used", say("joint", "answered")
    if row.status != WAITING:
        return "ended", say("joint", "ended")
    if row.expires_at <= conv.now:
        return "expired", say("joint", "expired")
    room = await conv.find_room(row.data["room"])
    actor = await conv.actor()
    if room is None or room.id is None or Role.MEMBER not in actor.roles_in(room.id):
        return "not_permitted", say("joint", "not_member")
    return None


async def _declined(conv: Conversation, row: JointRecommendation) -> None:
    row.status = DECLINED
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
    cosigners = [int(pid) for pid in data["answers"]]
    try:
        if room is None:  # the room was removed meanwhile
            raise _Failed(say("joint", "room_gone"))
        topic = await open_draft(
            conv.session,
            conv.lifecycle,
            room=room,
            actor=await load_actor(conv.session, initiator),
            draft=data["draft"],
            uploader_id=initiator,
            fields={"cosigners": cosigners},
        )
    except (WorkflowError, _Failed) as refusal:  # e.g. the recommending member lost the role
        row.status = FAILED
        why = say("joint", "failed", reason=str(refusal))
        conv.reply(why)
        await conv.tell(initiator, f"joint:{row.token}:failed", why, kind="joint")
        return
    row.status = OPENED
    row.data = {**data, "topic": topic.id}
    conv.reply(say("joint", "opened_you", number=topic.number, title=topic.title))
    await conv.tell(
        initiator,
        f"joint:{row.token}:opened",
        say("joint", "opened") + "\n" + receipt(topic, room),
        kind="joint",
        topic_id=topic.id,
    )


class _Failed(Exception):
    """The recommendation cannot be opened, for a reason the message says."""


def _others(conv: Conversation, row: JointRecommendation) -> list[int]:
    """Everyone in the recommendation but the person answering now."""
    everyone = [int(row.data["initiator"]), *(int(pid) for pid in row.data["answers"])]
    return [pid for pid in dict.fromkeys(everyone) if pid != conv.person.id]


HANDLERS = Handlers("joint", buttons=[on(JOINT, answer)])
