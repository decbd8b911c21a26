"""A meeting as an iCalendar file (RFC 5545, ``icalendar`` 7): one VEVENT whose start and
end carry ``TZID=Asia/Shanghai`` with the zone's VTIMEZONE, so every calendar shows it in
its own owner's time. The video link is left out (it is given only in the live window);
the meeting's page is the event's URL. ``SEQUENCE`` is the meeting's version, so a
calendar that imported the first file takes a reschedule's as an update."""

from __future__ import annotations

from datetime import datetime

from icalendar import Calendar, Event, Timezone

from storage.meetings import Meeting
from storage.models import Topic
from workflow.clock import CHINA


def meeting_ics(meeting: Meeting, topic: Topic, page_url: str, now: datetime) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", "-//mashangyi//码上议//ZH")
    calendar.add("version", "2.0")
    calendar.add("method", "CANCEL" if meeting.status == "cancelled" else "PUBLISH")
    calendar.add_component(Timezone.from_tzinfo(CHINA))
    event = Event()
    event.add("uid", f"meeting-{meeting.code}@mashangyi")
    event.add("sequence", meeting.version)
    event.add("dtstamp", now)
    event.add("dtstart", meeting.starts_at.astimezone(CHINA))
    event.add("dtend", meeting.ends_at.astimezone(CHINA))
    event.add("summary", f"协商会议：{topic.title}")
    event.add("location", meeting.place)
    event.add("url", page_url)
    event.add("description", "\n".join(filter(None, [meeting.agenda, meeting.materials, page_url])))
    if meeting.status == "cancelled":
        event.add("status", "CANCELLED")
    calendar.add_component(event)
    return calendar.to_ical()
