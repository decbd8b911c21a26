"""A review step's photos sent in the chat (``FieldSpec("uploads")``: after the meeting,
the minutes on paper, the room, who came), asked by dialogs/review.py.

Each photo is kept at once as the person's own attachment, not yet linked to anything
(downloaded in the background, bot/media.py); its id waits in the dialog until 完成, and
``Lifecycle.apply`` links them when the step is taken. A photo the platform says is larger
than ``media.max_bytes`` is refused at once, and one over the field's count too.
"""

from __future__ import annotations

from typing import Any

from dialogs.conversation import SAY, Conversation, say
from dialogs.submit_fields import attach
from dialogs.types import Button
from workflow.lifecycle import FIELDS
from workflow.payloads import Payload
from workflow.texts import label

SENT = "uploads"  # the ids sent so far, kept in the review's data


def ask(conv: Conversation, review: dict[str, Any], name: str) -> None:
    sent = review.setdefault(SENT, [])
    conv.reply(
        say("review", "ask_uploads", field=label("fields", name), limit=FIELDS[name].max_len)
        + (say("review", "uploads_count", count=len(sent)) if sent else ""),
        Button(SAY.label("buttons_review", "uploads_done"), Payload.REVIEW_DONE),
        Button(SAY.label("buttons_review", "skip"), Payload.REVIEW_SKIP),
    )


async def take(conv: Conversation, review: dict[str, Any], name: str) -> bool:
    """Take a photo (True: the field is answered, go on, after 完成)."""
    inbound, sent = conv.inbound, review.setdefault(SENT, [])
    if inbound.kind == "button" and inbound.payload == Payload.REVIEW_DONE:
        review["fields"][name] = list(sent) or None
        review.pop(SENT)
        return True
    if inbound.kind != "image" or inbound.media is None:
        ask(conv, review, name)
        return False
    limit = conv.max_upload_bytes
    if limit and inbound.media.size > limit:
        conv.reply(
            say(
                "review",
                "upload_too_large",
                size=_mb(inbound.media.size),
                limit=_mb(limit),
            ),
            Button(SAY.label("buttons_review", "uploads_done"), Payload.REVIEW_DONE),
        )
        return False
    if len(sent) >= FIELDS[name].max_len:
        conv.reply(
            say("review", "too_many_uploads", limit=FIELDS[name].max_len),
            Button(SAY.label("buttons_review", "uploads_done"), Payload.REVIEW_DONE),
        )
        return False
    sent.append(await attach(conv, "image"))
    conv.reply(
        say("review", "upload_received", count=len(sent)),
        Button(SAY.label("buttons_review", "uploads_done"), Payload.REVIEW_DONE),
    )
    return False


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f}"
