"""委员荐题's co-signers, chosen from the summary of 提议题 (dialogs/submit_topic.py): the
room's other members as buttons, a press adds or removes one. dialogs/joint.py asks them once
the member confirms."""

from __future__ import annotations

from dialogs.conversation import Conversation, button, say
from dialogs.types import Button
from workflow.payloads import COSIGNER, Payload
from workflow.people import cosigner_candidates

MAX_COSIGNERS = 10


async def offer(conv: Conversation, chosen: list[int]) -> bool:
    """Ask for co-signers (``chosen`` ticked); False, having said so, when there is nobody."""
    candidates = await _candidates(conv)
    if not candidates:
        conv.reply(say("sources", "no_cosigners"))
        return False
    conv.reply(
        say("sources", "ask_cosigners", limit=MAX_COSIGNERS),
        *[
            Button(("✓ " if pid in chosen else "") + name, COSIGNER.build(pid))
            for pid, name in candidates.items()
        ],
        button("done", Payload.SUBMIT_DONE),
    )
    return True


async def toggle(conv: Conversation, chosen: list[int]) -> bool:
    """A pressed co-signer added to or removed from ``chosen``; False for anything else
    (完成, or a message): the choice is done."""
    inbound = conv.inbound
    payload = inbound.payload if inbound.kind == "button" else ""
    if not COSIGNER.claims(payload):
        return False
    pid = COSIGNER.parse(payload)
    if pid not in await _candidates(conv):  # a forged or outdated choice
        conv.reply(say("sources", "not_a_cosigner"))
    elif pid in chosen:
        chosen.remove(pid)
    elif len(chosen) >= MAX_COSIGNERS:
        conv.reply(say("sources", "too_many_cosigners", limit=MAX_COSIGNERS))
    else:
        chosen.append(pid)
    return True


async def _candidates(conv: Conversation) -> dict[int, str]:
    room = await conv.room()
    assert room is not None and room.id is not None and conv.person.id is not None
    rows = await cosigner_candidates(conv.session, room.id, conv.person.id)
    return {pid: name or f"#{pid}" for pid, name in rows}
