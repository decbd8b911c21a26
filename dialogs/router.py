"""``Dialogs.process``: one inbound message → the replies, exactly once.

Per message: throttle → (one transaction) sender and dialog state (locked; storage/dialog_state.py)
→ expiry → the flow's step → state and receipt saved. A retried message conflicts on its
receipt's unique key and gets the replies stored the first time, without a second effect.
One person's messages are processed one at a time (an in-process lock, plus a row lock on
the dialog state on PostgreSQL), in the order they came: a message that finds an older one
of the same person kept but not yet handled (dialogs/inbox.py) is kept behind it.

A message acknowledged before it was handled (WeChat's deadline) has a ``queued`` receipt;
when its step finally runs, its replies go through the outbox (``ReplyLater``) in the same
transaction, and every delivery of it is told so (``Handled.deferred``): one message, one
reply.
"""

from __future__ import annotations

import asyncio
import copy
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from dialogs import (
    home,
    invites,
    join_meeting,
    joint,
    moderation,
    my_topics,
    polls,
    public_topics,
    research,
    review,
    satisfaction,
    submit_topic,
    suggest,
)
from dialogs.conversation import HOME, Conversation, ReplyLater, Tell, WriteReplies, say
from dialogs.handlers import Handlers, Routes
from dialogs.inbox import Receipt, keep_in_queue, read_receipt
from dialogs.throttle import LocalThrottle, Throttle, Verdict
from dialogs.types import Inbound, Reply, reply_bodies
from storage import dialog_state
from storage.db import SessionFactory, transaction
from workflow.clock import Clock
from workflow.engine import Lifecycle

#: Typed anywhere, these leave any dialog.
CANCEL_WORDS = {"取消", "退出", "/cancel"}
#: Typed, these keep their meaning even where an offered label starts with them.
GLOBAL_WORDS = CANCEL_WORDS | home.MENU_WORDS | my_topics.MINE_WORDS


async def cancel(conv: Conversation) -> None:
    conv.home()
    conv.reply(say("common", "cancelled"))


#: What every dialog module handles; ``Dialogs`` combines them (dialogs/handlers.py).
HANDLERS: tuple[Handlers, ...] = (
    Handlers("router", words=dict.fromkeys(CANCEL_WORDS, cancel)),
    invites.HANDLERS,
    home.HANDLERS,
    my_topics.HANDLERS,
    submit_topic.HANDLERS,
    review.HANDLERS,
    joint.HANDLERS,
    public_topics.HANDLERS,
    suggest.HANDLERS,
    moderation.HANDLERS,
    polls.HANDLERS,
    join_meeting.HANDLERS,
    research.HANDLERS,
    satisfaction.HANDLERS,
)


@dataclass(frozen=True)
class Handled:
    """What became of one message."""

    replies: list[Reply]
    #: The message was acknowledged before it was handled: its replies go (or went) through
    #: the outbox, so no delivery of it may carry them as an immediate reply.
    deferred: bool = False
    #: The flood limit refused it (``replies`` says so); quietly: the rest of a flood.
    refused: Verdict | None = None
    #: Answered from its receipt: handled by an earlier delivery, not by this one.
    repeated: bool = False


def _repeat(receipt: Receipt) -> Handled:
    """What a message handled before answers a re-delivery."""
    # A kept message that could not be handled ("failed") has nothing more to say.
    deferred = receipt.status == "done" and receipt.queued_at is not None
    return Handled(receipt.replies, deferred=deferred, repeated=True)


@dataclass
class Answered:
    """Given by a channel that may acknowledge a message before its step ends: ``late`` is
    set once it did so without its replies and without a queued receipt (the message is in
    the local spool); the step then sends its replies through the outbox."""

    late: bool = False


@dataclass(frozen=True)
class DialogSettings:
    idle_minutes: float = 30.0
    flood_messages: int = 10
    flood_seconds: float = 10.0
    #: The sensitive-word list (config [moderation]): suggestions containing one are held.
    sensitive_words: tuple[str, ...] = ()
    #: Where the public pages are, for links to them (config server.public_base_url).
    public_base_url: str = ""
    #: The WeChat subscription template (config wechat.subscribe_template_id): set, the bot
    #: offers the topic page's "结果公布时通知我" after a follow, like or suggestion.
    subscribe_template_id: str = ""
    #: The largest upload kept (config media.max_bytes): a larger one is refused at once.
    max_upload_bytes: int = 10 * 1024 * 1024


class Dialogs:
    def __init__(
        self,
        sessions: SessionFactory,
        lifecycle: Lifecycle,
        clock: Clock,
        tell: Tell,
        settings: DialogSettings | None = None,
        throttle: Throttle | None = None,
        reply_later: ReplyLater | None = None,
        handlers: Sequence[Handlers] = HANDLERS,
    ) -> None:
        """``handlers``: the dialog modules' tables; two claiming the same payload kind,
        word, flow or start payload raise ``handlers.Conflict`` here, at start-up."""
        self.routes = Routes(handlers)
        self.sessions = sessions
        self.lifecycle = lifecycle
        self.clock = clock
        self.tell = tell
        self.settings = settings or DialogSettings()
        self.throttle = throttle or LocalThrottle(
            self.settings.flood_messages, self.settings.flood_seconds
        )
        self.reply_later = reply_later
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def handle(self, inbound: Inbound) -> list[Reply]:
        """The replies to show now (the console and tests; channels use ``process``)."""
        return (await self.process(inbound)).replies

    async def process(
        self,
        inbound: Inbound,
        *,
        queued_at: datetime | None = None,
        answered: Answered | None = None,
        write_replies: WriteReplies | None = None,
    ) -> Handled:
        """Handle one message. ``queued_at``: it was kept at that time and is handled now
        from the queue (already admitted by the flood limit). ``answered``: see there.
        ``write_replies``: called with the replies in the step's transaction when this
        delivery handled the message (not for a refusal or a repeat)."""
        key = (inbound.channel, inbound.user_ref)
        if queued_at is None:
            verdict = await self.throttle.check(key, inbound.message_id)
            if verdict is not Verdict.ALLOW:
                # Not handled, and never in silence: the channel says so, or (the rest of a
                # flood, on a channel where each answer costs) leaves it unacknowledged so
                # the platform delivers it again.
                return Handled([Reply(say("common", "too_fast"))], refused=verdict)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                return await self._handle(inbound, queued_at, answered, write_replies)
        finally:
            if not lock.locked() and not lock._waiters:  # keep the dict small
                self._locks.pop(key, None)

    async def _handle(
        self,
        inbound: Inbound,
        queued_at: datetime | None,
        answered: Answered | None,
        write_replies: WriteReplies | None,
    ) -> Handled:
        # No look-up of the receipt first: a retry is rare, so the message is handled and
        # its receipt written; a retry conflicts on the receipt's unique key, everything it
        # did is rolled back, and it gets the replies stored the first time.
        try:
            async with transaction(self.sessions) as session:
                conn = await session.connection()
                now = self.clock.now()
                person, chat, backlog = await dialog_state.load(conn, inbound, HOME, now, queued_at)
                if backlog and inbound.message_id:
                    # An older message of theirs waits: this one goes behind it.
                    if queued_at is None:
                        receipt = await keep_in_queue(conn, inbound, now)
                        if receipt.status != "queued":
                            return _repeat(receipt)  # handled before: a re-delivery
                    return Handled([], deferred=True)
                conv = Conversation(
                    session,
                    inbound,
                    person,
                    chat,
                    self.lifecycle,
                    now,
                    self.tell,
                    words=self.settings.sensitive_words,
                    public_base_url=self.settings.public_base_url,
                    subscribe_template=self.settings.subscribe_template_id,
                    max_upload_bytes=self.settings.max_upload_bytes,
                )
                before = _where(conv)
                if chat.flow != HOME and chat.expires_at is not None and chat.expires_at <= now:
                    conv.home()
                    conv.reply(say("common", "expired", minutes=round(self.settings.idle_minutes)))
                await self._step(conv)
                _remember_buttons(conv, before)
                deferred = await dialog_state.save(
                    conn,
                    inbound,
                    chat,
                    now,
                    now + timedelta(minutes=self.settings.idle_minutes),
                    reply_bodies(conv.replies) if inbound.message_id else None,
                    late=answered is not None and answered.late,
                )
                if deferred and self.reply_later is not None:
                    await self.reply_later(
                        session,
                        channel=inbound.channel,
                        address=inbound.user_ref,
                        message_id=inbound.message_id,
                        replies=conv.replies,
                        now=now,
                    )
                elif write_replies is not None:
                    await write_replies(session, conv.replies, now)
                return Handled(conv.replies, deferred=deferred)
        except (dialog_state.Duplicate, IntegrityError):
            repeat = await self.stored(inbound)
            if repeat is None:
                raise
            return repeat

    async def stored(self, inbound: Inbound) -> Handled | None:
        """What a message handled before answered, or None when it has not been."""
        async with self.sessions() as session:
            receipt = await read_receipt(await session.connection(), inbound)
        if receipt is None or receipt.status == "queued":
            return None
        return _repeat(receipt)

    async def _step(self, conv: Conversation) -> None:
        conv.inbound = _numbered_choice(conv)
        await self.routes.step(conv)


def _where(conv: Conversation) -> tuple[str, str, dict[str, Any]]:
    """The dialog's step and data, apart from the buttons offered (a copy)."""
    data = {k: v for k, v in conv.data.items() if k != "_buttons"}
    return conv.state.flow, conv.state.step, copy.deepcopy(data)


def _remember_buttons(conv: Conversation, before: tuple[str, str, dict[str, Any]]) -> None:
    """Keep the last buttons offered, so a typed “2” can press button 2 next time.

    A reply without buttons that left the dialog where it was (“not understood”) keeps
    them: the person may still pick one; a step taken forgets them."""
    offered = next((r.buttons for r in reversed(conv.replies) if r.buttons), None)
    if offered is not None:
        conv.data["_buttons"] = [[b.label, b.payload] for b in offered]
    elif conv.replies and _where(conv) != before:
        conv.data.pop("_buttons", None)


def _numbered_choice(conv: Conversation) -> Inbound:
    """A typed number or label where buttons were offered (WeChat, console, or anywhere
    a person types instead of tapping) means pressing that button."""
    inbound = conv.inbound
    if inbound.kind != "text":
        return inbound
    payload = chosen(inbound.text, conv.data.get("_buttons") or [])
    return inbound if payload is None else replace(inbound, kind="button", payload=payload)


def chosen(text: str, offered: Sequence[Sequence[str]]) -> str | None:
    """The payload of the offered ``[label, payload]`` that ``text`` picks: its number, its
    label, or the start of exactly one label (compared after NFKC); None when none does."""
    typed = unicodedata.normalize("NFKC", text).strip()
    if not typed or not offered:
        return None
    if typed.isdecimal():
        return offered[int(typed) - 1][1] if 1 <= int(typed) <= len(offered) else None
    if typed in GLOBAL_WORDS:
        return None
    labels = [(unicodedata.normalize("NFKC", label).strip(), p) for label, p in offered]
    exact = [p for label, p in labels if label == typed]
    if exact:
        return exact[0]
    starting = [p for label, p in labels if label.startswith(typed)]
    return starting[0] if len(starting) == 1 else None
