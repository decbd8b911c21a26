"""A ``Lifecycle`` listener: a meeting rescheduled or cancelled is told to everyone
registered for it, each in their own time zone, in the change's transaction (their
reminders follow the new start by themselves: notices/reminders/meetings.py)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from notices.message import OutboundMessage
from notices.notify import send_to
from notices.templating import text_environment
from storage.models import Topic
from workflow.clock import Clock
from workflow.engine import DomainEvent
from workflow.meetings import their_zone, topic_participants, zone_label
from workflow.when import say_when

#: The events participants hear of, by their template (templates/meetings/).
TOLD = {"topic.meeting_scheduled": "moved", "topic.meeting_cancelled": "cancelled"}


class MeetingNotices:
    def __init__(self, clock: Clock, public_base_url: str) -> None:
        self.clock = clock
        self.public_base_url = public_base_url.rstrip("/")
        self.env = text_environment()

    async def __call__(
        self, session: AsyncSession, topic: Topic, events: list[DomainEvent]
    ) -> None:
        assert topic.id is not None
        for event in events:
            template = TOLD.get(event.name)
            if template is None or (template == "moved" and "previous_time" not in event.fields):
                continue
            now = self.clock.now()
            for person in await topic_participants(session, topic.id):
                moment = event.fields.get("time")
                their = ""
                if moment and person.zone:
                    their = say_when(
                        datetime.fromisoformat(moment),
                        their_zone(person),
                        zone_name=zone_label(person),
                        now=now,
                    )
                text = (
                    self.env.get_template(f"meetings/{template}.txt")
                    .render(
                        topic=topic,
                        name=person.display_name,
                        fields=event.fields,
                        their_when=their,
                        url=f"{self.public_base_url}/m/{event.fields.get('code', '')}",
                    )
                    .strip()
                )
                await send_to(
                    session,
                    person.person_id,
                    OutboundMessage(text=text),
                    key=f"event:{event.event_id}:meeting:{person.person_id}",
                    kind=f"meeting.{template}",
                    now=now,
                    topic_id=topic.id,
                )
