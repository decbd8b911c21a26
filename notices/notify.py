"""Domain events → outbox rows, in the same transaction as the change.

Each event names who must hear of it: the submitter (the person affected) and the
reviewers who now have work. The message text comes from ``templates/<audience>/<event>.txt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.message import FileRef, OutboundMessage, Shown, as_buttons
from notices.outbox import enqueue
from notices.printable import SAY as PRINTABLE_TEXTS
from notices.printable import file_key, file_name
from notices.templating import text_environment
from storage.models import Attachment, CardMessage, Person, Room, Topic
from workflow.cards import action_buttons, card_text
from workflow.clock import CHINA, Clock, last_day
from workflow.engine import DomainEvent
from workflow.lifecycle import Role, public_url
from workflow.people import chat_address, holders
from workflow.permissions import load_actor
from workflow.review_links import ReviewLinks
from workflow.satisfaction import asked
from workflow.texts import catalogue, label, text
from workflow.workdays import WorkdayCalendar

#: Who gets told, besides the submitter, and why: the role that must act next.
REVIEWERS: dict[str, tuple[Role, ...]] = {
    "topic.submitted": (Role.CONVENER,),
    "topic.transferred": (Role.CONVENER,),
    "topic.assigned": (Role.CONVENER,),
    "topic.sent_back": (Role.CONVENER,),
    "topic.referred": (Role.CONVENER, Role.SUPERVISOR),
    "topic.accepted": (Role.PARTY,),
    # The convener publishes (公示) what the Party organisation approved, and the results.
    "topic.approved": (Role.CONVENER,),
    "topic.meeting_recorded": (Role.PARTY,),
    "topic.outcome_approved": (Role.CONVENER,),
    # After the meeting (issue 13): the outcome sent back, the implementer's work, the
    # department's reply awaited, the submitter's 不满意.
    "topic.outcome_sent_back": (Role.CONVENER,),
    "topic.results_published": (Role.IMPLEMENTER,),
    "topic.reply_requested": (Role.IMPLEMENTER,),
    "topic.reopened": (Role.CONVENER,),
}
#: Changes the submitter is not told of (internal bookkeeping).
NOT_FOR_SUBMITTER = frozenset(
    {"topic.findings_recorded", "topic.research_skipped", "topic.outcome_sent_back"}
)
#: Publications whose printable notice (notices/printable.py) the convener who published
#: is sent, for the village notice board, by its kind.
PRINTABLE = {"topic.publicized": "topic", "topic.results_published": "results"}
#: Channels whose messages cannot carry a document (WeChat's customer-service messages:
#: text, image, voice, video, music, news, msgmenu): there the PDF is its link only.
NO_DOCUMENTS = frozenset({"wechat"})


@dataclass(frozen=True)
class Recipient:
    person_id: int
    audience: str  # "submitter" or "reviewer"


class OutboxWriter:
    """A ``Lifecycle`` listener: renders each event for each recipient into the outbox."""

    def __init__(
        self,
        clock: Clock,
        public_base_url: str,
        calendar: WorkdayCalendar,
        review_links: ReviewLinks | None = None,
    ) -> None:
        self.clock = clock
        # Reviewer cards also carry a signed review-page link (WeChat's template fallback).
        self.review_links = review_links
        self.calendar = calendar
        self.public_base_url = public_base_url.rstrip("/")
        self.env = text_environment()

    async def __call__(
        self, session: AsyncSession, topic: Topic, events: list[DomainEvent]
    ) -> None:
        for event in events:
            if event.from_state is not None:  # a topic just opened has no cards yet
                await self._mark_cards_handled(session, topic, event)
            room = await session.get(Room, topic.room_id)
            now = self.clock.now()
            card: str | None = None  # the same for every reviewer: made once, when needed
            media = False
            await self._send_printable(session, topic, event, now)
            for recipient in await self._recipients(session, topic, event):
                identity = await chat_address(session, recipient.person_id)
                if identity is None:
                    continue
                message = OutboundMessage(
                    text=self.render(recipient.audience, event, topic, room),
                    topic_number=topic.number,
                    url=public_url(self.public_base_url, topic.number, topic.state),
                )
                if recipient.audience == "submitter":  # 问题解决了吗？ once implemented
                    assert topic.id is not None
                    message = replace(message, buttons=as_buttons(asked(event.name, topic.id)))
                if recipient.audience == "reviewer":  # the card, with the buttons to act
                    if card is None:
                        card = await card_text(session, topic, self.calendar, now)
                        media = await _has_media(session, topic)
                    actor = await load_actor(session, recipient.person_id)
                    message = replace(
                        message,
                        text=message.text + "\n\n" + card,
                        buttons=as_buttons(await action_buttons(session, topic, actor, now)),
                    )
                    if message.buttons and self.review_links is not None:
                        review_url = await self.review_links.issue(
                            session, recipient.person_id, topic, now
                        )
                        shown = message.text
                        if media:  # shown on the review page
                            shown += "\n" + text("cards", "media_link", url=review_url)
                        message = replace(message, text=shown, review_url=review_url)
                await enqueue(
                    session,
                    key=f"event:{event.event_id}:{recipient.audience}:{recipient.person_id}",
                    channel=identity.channel,
                    address=identity.external_id,
                    kind=event.name,
                    message=message,
                    now=now,
                    person_id=recipient.person_id,
                    topic_id=topic.id,
                )

    async def _send_printable(
        self, session: AsyncSession, topic: Topic, event: DomainEvent, now: datetime
    ) -> None:
        """The one who published gets the notice to print: a message with the links to its
        PNG and PDF, then each file as a message of its own (so a failed upload is tried
        again alone), the PDF not on WeChat, whose customer-service messages carry no
        document (its link does). The files are drawn once, by the first send that needs
        them (bot/notice_files.py), and kept under the topic's version."""
        kind = PRINTABLE.get(event.name)
        if kind is None or event.actor_id is None:
            return
        identity = await chat_address(session, event.actor_id)
        if identity is None:
            return
        page = public_url(self.public_base_url, topic.number, topic.state)
        query = "?kind=results" if kind == "results" else ""
        links = OutboundMessage(
            text=self.env.get_template(f"reviewer/notice.{kind}.txt")
            .render(topic=topic, png=f"{page}/notice.png{query}", pdf=f"{page}/notice.pdf{query}")
            .strip(),
            topic_number=topic.number,
            url=page,
        )
        files = [("png", "image")]
        if identity.channel not in NO_DOCUMENTS:
            files.append(("pdf", "document"))
        heading = PRINTABLE_TEXTS.text("notice", f"heading_{kind}")
        messages = [("", links)] + [
            (
                f":{suffix}",
                OutboundMessage(
                    text=PRINTABLE_TEXTS.text("notice", f"caption_{file_kind}", heading=heading),
                    topic_number=topic.number,
                    url=page,
                    file=FileRef(
                        key=file_key(topic.number, kind, topic.version, suffix),
                        filename=file_name(topic.number, kind, suffix),
                        kind=file_kind,
                    ),
                ),
            )
            for suffix, file_kind in files
        ]
        for part, message in messages:
            await enqueue(
                session,
                key=f"event:{event.event_id}:notice:{event.actor_id}{part}",
                channel=identity.channel,
                address=identity.external_id,
                kind="notice.printable",
                message=message,
                now=now,
                person_id=event.actor_id,
                topic_id=topic.id,
            )

    async def _mark_cards_handled(
        self, session: AsyncSession, topic: Topic, event: DomainEvent
    ) -> None:
        """Every card of this topic already sent (Telegram) is edited: who did what, when;
        its buttons go, so nobody presses a stale one."""
        cards = (
            await session.exec(select(CardMessage).where(CardMessage.topic_id == topic.id))
        ).all()
        if not cards:
            return
        actor = await session.get(Person, event.actor_id) if event.actor_id else None
        when = self.clock.now().astimezone(CHINA)
        note = text(
            "cards",
            "handled",
            who=actor.display_name if actor else "",
            role=label("roles", event.actor_role),
            when=f"{when:%m-%d %H:%M}",
            action=label("actions", event.action),
            number=topic.number,
            title=topic.title,
            state=label("states", topic.state),
        )
        for card in cards:
            await enqueue(
                session,
                key=f"card:{card.id}:{event.event_id}",
                channel=card.channel,
                address=card.chat_id,
                kind="card.handled",
                message=OutboundMessage(text=note, edit_message_id=card.message_id),
                now=self.clock.now(),
                topic_id=topic.id,
            )

    def render(self, audience: str, event: DomainEvent, topic: Topic, room: Room | None) -> str:
        template = self.env.get_template(f"{audience}/{event.name}.txt")
        context: dict[str, Any] = {
            "topic": topic,
            "room": room,
            "fields": event.fields,
            "state": catalogue()["states"].get(topic.state, topic.state),
            "due": last_day(topic.review_due_at) if topic.review_due_at else None,
            "url": public_url(self.public_base_url, topic.number, topic.state),
            "base_url": self.public_base_url,
            "labels": catalogue(),
        }
        return template.render(context).strip()

    async def _recipients(
        self, session: AsyncSession, topic: Topic, event: DomainEvent
    ) -> list[Recipient]:
        found: list[Recipient] = []
        if event.name not in NOT_FOR_SUBMITTER and topic.submitter_id is not None:
            found.append(Recipient(topic.submitter_id, "submitter"))
        roles = REVIEWERS.get(event.name, ())
        if roles:
            found += [
                Recipient(pid, "reviewer") for pid in await holders(session, topic.room_id, roles)
            ]
        # Nobody is told about what they did themselves.
        return [r for r in _unique(found) if r.person_id != event.actor_id]


async def tell(
    session: AsyncSession,
    person_id: int,
    *,
    key: str,
    kind: str,
    text: str,
    buttons: Sequence[tuple[str, str]] = (),
    topic_id: int | None = None,
    now: datetime,
    file: tuple[str, str, str] | None = None,
) -> None:
    """One message to one person through the outbox, in the caller's transaction, on the
    chat they used last; nothing for a person with no chat yet. The dialogs' ``Tell``
    (whose ``buttons`` are (label, payload) pairs; ``file`` a ``FileRef``'s fields)."""
    message = OutboundMessage(
        text=text, buttons=as_buttons(buttons), file=FileRef(*file) if file else None
    )
    await send_to(session, person_id, message, key=key, kind=kind, now=now, topic_id=topic_id)


async def send_to(
    session: AsyncSession,
    person_id: int,
    message: OutboundMessage,
    *,
    key: str,
    kind: str,
    now: datetime,
    topic_id: int | None = None,
) -> None:
    """``message`` to one person through the outbox, in the caller's transaction, on the chat
    they used last; nothing for a person with no chat yet."""
    identity = await chat_address(session, person_id)
    if identity is None:
        return
    await enqueue(
        session,
        key=key,
        channel=identity.channel,
        address=identity.external_id,
        kind=kind,
        message=message,
        now=now,
        person_id=person_id,
        topic_id=topic_id,
    )


async def reply_later(
    session: AsyncSession,
    *,
    channel: str,
    address: str,
    message_id: str,
    replies: Sequence[Shown],
    now: datetime,
) -> None:
    """The replies to a message acknowledged before it was handled, through the outbox,
    to the chat it came from, in order (the dialogs' ``ReplyLater``). Keys follow the
    message, so handling it twice writes them once."""
    for number, reply in enumerate(replies):
        await enqueue(
            session,
            key=f"{channel}:late:{message_id}:{number}",
            channel=channel,
            address=address,
            kind="dialog.reply",
            message=OutboundMessage.of(reply),
            now=now,
        )


async def _has_media(session: AsyncSession, topic: Topic) -> bool:
    found = await session.exec(
        select(Attachment.id).where(Attachment.topic_id == topic.id).limit(1)
    )
    return found.first() is not None


def _unique(recipients: list[Recipient]) -> list[Recipient]:
    seen: set[int] = set()
    out = []
    for r in recipients:
        if r.person_id not in seen:
            seen.add(r.person_id)
            out.append(r)
    return out
