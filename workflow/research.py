"""Research before consultation (商前调研): who may organise it, whom the plan names
(members, operators, the Party secretary, grid workers of the topic's room: people the
service knows by their role), their confirmations, and the findings' photos and files.

The plan itself and the findings are lifecycle steps (``plan_research``,
``record_findings``); naming people and uploading media is allowed to whoever may record
findings (convener, operator) while the topic is being researched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.meetings import ResearchParticipant
from storage.models import Attachment, Person, Topic, TopicEvent
from workflow.errors import NotPermitted, WrongState
from workflow.lifecycle import TRANSITIONS, Role, State
from workflow.people import role_holders
from workflow.permissions import Actor, can
from workflow.rooms import room_chain

#: The roles whose holders may be named, in the order they are offered.
NAMED_ROLES = (Role.MEMBER, Role.PARTY, Role.OPERATOR, Role.GRID)
MAX_FILES = 20


#: Who may name people, and when: for the research, whoever may record its findings while
#: it is under way; for the meeting, whoever may schedule it, once it is scheduled.
ORGANISING = {
    "research": ("record_findings", State.RESEARCHING),
    "meeting": ("schedule_meeting", State.MEETING_SCHEDULED),
}


async def may_organise(
    session: AsyncSession, actor: Actor, topic: Topic, purpose: str = "research"
) -> bool:
    action, state = ORGANISING[purpose]
    chain = [r.id for r in await room_chain(session, topic.room_id) if r.id is not None]
    return topic.state == state and can(actor, TRANSITIONS[action], topic, chain)


async def check_organiser(
    session: AsyncSession, actor: Actor, topic: Topic, purpose: str = "research"
) -> None:
    if not await may_organise(session, actor, topic, purpose):
        raise NotPermitted(f"{purpose}_not_permitted")


async def candidates(session: AsyncSession, topic: Topic) -> list[tuple[int, str, str]]:
    """(person id, name, role) of the people who may be named, each once under their first
    role in ``NAMED_ROLES``, in that order."""
    roles: dict[int, str] = {}
    for person_id, role in await role_holders(session, topic.room_id, NAMED_ROLES):
        if person_id not in roles or NAMED_ROLES.index(role) < NAMED_ROLES.index(roles[person_id]):
            roles[person_id] = role
    if not roles:
        return []
    names = dict(
        (
            await session.exec(
                select(Person.id, Person.display_name).where(col(Person.id).in_(list(roles)))
            )
        ).all()
    )
    return sorted(
        ((pid, names.get(pid) or "", role) for pid, role in roles.items()),
        key=lambda c: (NAMED_ROLES.index(Role(c[2])), c[0]),
    )


async def name_participants(
    session: AsyncSession,
    topic: Topic,
    named: Sequence[tuple[int, str]],
    actor: Actor,
    now: datetime,
) -> list[ResearchParticipant]:
    """Record the people named (person id, role); one named before stays one row. The rows
    newly made, to be told."""
    await check_organiser(session, actor, topic)
    before = set(
        (
            await session.exec(
                select(ResearchParticipant.person_id).where(
                    ResearchParticipant.topic_id == topic.id
                )
            )
        ).all()
    )
    assert topic.id is not None
    made = []
    for person_id, role in named:
        if person_id in before:
            continue
        row = ResearchParticipant(
            topic_id=topic.id,
            person_id=person_id,
            role=role,
            named_by_id=actor.person_id,
            named_at=now,
        )
        session.add(row)
        made.append(row)
        before.add(person_id)
    await session.flush()
    return made


async def confirm(
    session: AsyncSession, participant_id: int, person_id: int, now: datetime
) -> ResearchParticipant | None:
    """The named person confirms (once; again changes nothing); None: not theirs."""
    row = await session.get(ResearchParticipant, participant_id)
    if row is None or row.person_id != person_id:
        return None
    if row.confirmed_at is None:
        await session.exec(
            update(ResearchParticipant)
            .where(
                col(ResearchParticipant.id) == row.id,
                col(ResearchParticipant.confirmed_at).is_(None),
            )
            .values(confirmed_at=now)
        )
        row.confirmed_at = now
    return row


async def findings_event(session: AsyncSession, topic: Topic) -> int:
    """The topic's latest findings (their event id), which photos and files belong to;
    refused before findings are recorded."""
    event_id = (
        await session.exec(
            select(TopicEvent.id)
            .where(TopicEvent.topic_id == topic.id, TopicEvent.action == "record_findings")
            .order_by(col(TopicEvent.id).desc())
            .limit(1)
        )
    ).first()
    if event_id is None:
        raise WrongState("findings_first")
    return event_id


async def attach_finding(
    session: AsyncSession, topic: Topic, event_id: int, attachment_id: int
) -> int:
    """Link an uploaded attachment to the findings of ``event_id``; how many photos and
    files those findings have now."""
    await session.exec(
        update(Attachment)
        .where(col(Attachment.id) == attachment_id, col(Attachment.topic_id).is_(None))
        .values(topic_id=topic.id, event_id=event_id)
    )
    rows = await session.exec(select(Attachment.id).where(Attachment.event_id == event_id))
    return len(rows.all())


@dataclass(frozen=True)
class ResearchRecord:
    """A topic's research as the command line shows it."""

    topic: Topic
    plan: dict[str, str]
    skipped: str  # the convener's reason for going without, "" when not skipped
    findings: str
    files: int
    participants: list[tuple[str, str, datetime | None]]  # name, role, confirmed at


async def research_record(session: AsyncSession, number: str) -> ResearchRecord | None:
    topic = (await session.exec(select(Topic).where(Topic.number == number))).first()
    if topic is None:
        return None
    rows = await session.exec(
        select(Person.display_name, ResearchParticipant.role, ResearchParticipant.confirmed_at)
        .join(Person, col(Person.id) == ResearchParticipant.person_id)
        .where(ResearchParticipant.topic_id == topic.id)
        .order_by(col(ResearchParticipant.id))
    )
    files = await session.exec(
        select(Attachment.id)
        .join(TopicEvent, col(TopicEvent.id) == Attachment.event_id)
        .where(Attachment.topic_id == topic.id, TopicEvent.action == "record_findings")
    )
    return ResearchRecord(
        topic=topic,
        plan=dict(topic.facts.get("plan_research") or {}),
        skipped=str((topic.facts.get("skip_research") or {}).get("reason", "")),
        findings=str((topic.facts.get("record_findings") or {}).get("findings", "")),
        files=len(files.all()),
        participants=[(name, role, at) for name, role, at in rows],
    )
