"""“Is it solved?” in the sweep: the submitter who has not answered ``satisfaction_after``
after the topic was implemented is asked once more (``satisfaction.again``, with the three
buttons); ``satisfaction_after`` after that second asking, the answer is recorded as
unanswered (``satisfaction.unanswered``: nobody is told, the finder records it, as the
poll sweep closes polls). Both are keyed by the round (when the topic was implemented), so
a topic reopened and implemented again is asked anew."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.reminders.kinds import Due, Sweep
from storage.models import ReminderSent
from workflow import satisfaction
from workflow.clock import CHINA
from workflow.lifecycle import State

AGAIN = "satisfaction.again"


def _occurrence(item: satisfaction.Waiting) -> str:
    return item.round.astimezone(CHINA).strftime("%Y%m%dT%H%M%S.%f")


async def ask_again(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """Submitters who have not answered ``satisfaction_after`` after implementation."""
    after = sweep.settings.satisfaction_after
    return [
        Due(
            subject=f"topic:{item.topic_id}",
            occurrence=_occurrence(item),
            room_id=item.room_id,
            topic_id=item.topic_id,
            submitter_id=item.submitter_id,
            state=State.IMPLEMENTED,
            context={
                "number": item.number,
                "title": item.title,
                "days": after.days,
                "url": sweep.topic_url(item.number, State.IMPLEMENTED),
                "topic_id": item.topic_id,
            },
        )
        for item in await satisfaction.waiting(session, sweep.now - after)
    ]


async def record_unanswered(session: AsyncSession, sweep: Sweep) -> list[Due]:
    """Record "unanswered" for the submitters asked again ``satisfaction_after`` ago who
    still have not answered; nobody is told (an empty list)."""
    after = sweep.settings.satisfaction_after
    waiting = await satisfaction.waiting(session, sweep.now - 2 * after)
    if not waiting:
        return []
    asked = {
        (subject, occurrence)
        for subject, occurrence in await session.exec(
            select(ReminderSent.subject, ReminderSent.occurrence).where(
                ReminderSent.kind == AGAIN,
                col(ReminderSent.subject).in_([f"topic:{w.topic_id}" for w in waiting]),
                col(ReminderSent.sent_at) <= sweep.now - after,
            )
        )
    }
    due = [w for w in waiting if (f"topic:{w.topic_id}", _occurrence(w)) in asked]
    await satisfaction.record_unanswered(session, due, sweep.now)
    return []


def answer_buttons(due: Due) -> list[tuple[str, str]]:
    return satisfaction.ask_buttons(due.context["topic_id"])
