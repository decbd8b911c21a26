"""``Lifecycle.apply``: the one way a topic changes.

Each call checks the actor's role, the topic's state and the fields, moves the topic,
appends one ``TopicEvent`` and hands the resulting domain events to the listeners (the
outbox), all inside the caller's transaction: either everything is recorded or nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Attachment, Room, Topic, TopicCounter, TopicEvent
from storage.participation import Poll
from storage.sql import insert_for
from workflow import meetings
from workflow.clock import CHINA, Clock, deadline_at
from workflow.errors import (
    Conflict,
    InvalidField,
    NotPermitted,
    UnknownAction,
    WrongState,
)
from workflow.fields import check_fields, jsonable, text_field
from workflow.lifecycle import (
    BACKGROUND_MAX,
    SUBMIT,
    TITLE_MAX,
    TRANSITIONS,
    Source,
    Transition,
)
from workflow.permissions import Actor, acting_role, can, source_role
from workflow.publication import check_timing
from workflow.rooms import nearest_common_ancestor, number_prefix, room_chain
from workflow.texts import label
from workflow.uploads import check_uploads, link_uploads
from workflow.workdays import WorkdayCalendar


@dataclass(frozen=True)
class DomainEvent:
    """What happened, for whoever must hear of it (``name`` is e.g. ``topic.declined``)."""

    name: str
    topic_id: int
    event_id: int
    action: str
    actor_id: int | None
    actor_role: str
    from_state: str | None
    to_state: str
    from_room_id: int | None
    room_id: int
    fields: Mapping[str, Any] = field(default_factory=dict)


Listener = Callable[[AsyncSession, Topic, list[DomainEvent]], Awaitable[None]]
#: Told of a screening poll just opened, in its transaction (notices/poll_pushes.py).
PollListener = Callable[[AsyncSession, Poll], Awaitable[None]]


class Lifecycle:
    def __init__(
        self,
        clock: Clock,
        calendar: WorkdayCalendar,
        *,
        review_days: int = 5,
        listeners: Sequence[Listener] = (),
        poll_listeners: Sequence[PollListener] = (),
    ) -> None:
        self.clock = clock
        self.calendar = calendar
        self.review_days = review_days
        self.listeners = list(listeners)
        self.poll_listeners = list(poll_listeners)

    async def poll_opened(self, session: AsyncSession, poll: Poll) -> None:
        """Hand a poll just created to the poll listeners (its push to the room's
        followers), in the caller's transaction, as a topic's events are."""
        for listener in self.poll_listeners:
            await listener(session, poll)

    async def open_topic(
        self,
        session: AsyncSession,
        *,
        room: Room,
        actor: Actor,
        source: Source | str,
        title: str,
        background: str = "",
        submitter_id: int | None = None,
        contact_phone: str | None = None,
        location: dict[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        attachment_ids: Sequence[int] = (),
        uploader_id: int | None = None,
    ) -> tuple[Topic, list[DomainEvent]]:
        """Raise a topic in ``room``. ``submitter_id`` defaults to the actor; a grid worker
        names the resident they push the topic for. ``fields`` are recorded with the event
        and in the topic's facts under "submit" (e.g. the co-signers of a joint
        recommendation); they must be JSON values."""
        try:
            source = Source(source)
        except ValueError:
            raise InvalidField("unknown_source") from None
        chain = await room_chain(session, _id(room))
        role = source_role(actor, source, [_id(r) for r in chain])
        if role is None:
            raise NotPermitted("source_not_permitted", source=label("sources", source))
        title = text_field("title", title, TITLE_MAX)
        background = text_field("background", background, BACKGROUND_MAX, allow_empty=True)
        now = self.clock.now()
        topic = Topic(
            number=await self._next_number(session, chain, now),
            room_id=_id(room),
            source=source,
            title=title,
            background=background,
            submitter_id=submitter_id if submitter_id is not None else actor.person_id,
            contact_phone=contact_phone,
            location=location,
            facts={SUBMIT.action: dict(fields)} if fields else {},
            state=SUBMIT.target,
            step_started_at=now,
            review_due_at=self.calendar.due_at(now, self.review_days),
            created_at=now,
            updated_at=now,
        )
        session.add(topic)
        await session.flush()
        if attachment_ids:  # linked before anyone is told, so the card can show them
            await session.exec(
                update(Attachment)
                .where(
                    col(Attachment.id).in_(list(attachment_ids)),
                    col(Attachment.uploaded_by_id) == uploader_id,
                    col(Attachment.topic_id).is_(None),
                )
                .values(topic_id=topic.id)
                .execution_options(synchronize_session=False)
            )
        recorded = {**(fields or {}), "source": str(source), "title": title}
        event = await self._record(
            session, topic, SUBMIT, actor.person_id, role, None, None, recorded, now
        )
        events = [event]
        await self._notify(session, topic, events)
        return topic, events

    async def apply(
        self, session: AsyncSession, topic: Topic, action: str, actor: Actor, **fields: Any
    ) -> list[DomainEvent]:
        """Take ``action`` on ``topic`` as ``actor``; raises a ``WorkflowError`` to refuse."""
        transition = TRANSITIONS.get(action)
        if transition is None:
            raise UnknownAction("unknown_action")
        chain = await room_chain(session, topic.room_id)
        role = acting_role(actor, transition, topic, [_id(r) for r in chain])
        action_label = label("actions", action)
        if role is None:
            raise NotPermitted("not_permitted", action=action_label)
        if topic.state not in transition.sources:
            raise WrongState("wrong_state", state=label("states", topic.state), action=action_label)
        now = self.clock.now()
        values = await check_fields(session, transition, fields, topic, now)
        check_timing(transition, topic, values, now)
        await check_uploads(session, transition, values, actor.person_id)
        if transition.after and not await _on_record(session, topic, transition.after):
            raise WrongState(
                "needs_prior", prior=label("actions", transition.after[0]), action=action_label
            )
        new_room = await self._new_room(session, topic, transition, values, chain)

        changes: dict[str, Any] = {"state": transition.target, "updated_at": now}
        if new_room is not None:
            changes["room_id"] = new_room.id
        if transition.clock:
            changes["step_started_at"] = now
            changes["review_due_at"] = (
                deadline_at(values[transition.deadline])
                if transition.deadline
                else self.calendar.due_at(now, self.review_days)
            )
        elif transition.target != topic.state:
            changes["step_started_at"] = now
            changes["review_due_at"] = None
        if transition.stamps is not None:
            changes[transition.stamps] = now
        if "category" in values or "kind" in values:
            changes["category"] = values.get("category") or values.get("kind")
        recorded = {name: jsonable(value) for name, value in values.items()}
        for name in ("title", "background"):  # the Party organisation's edits
            if name in values and values[name] != getattr(topic, name):
                recorded[f"previous_{name}"] = getattr(topic, name)
                changes[name] = values[name]
        from_state, from_room = topic.state, topic.room_id
        if action in meetings.ACTIONS:  # the meeting beside the topic, in this transaction
            recorded |= await meetings.keep(session, topic, action, values, actor.person_id, now)
        changes["facts"] = {**topic.facts, action: recorded}
        await self._update(session, topic, changes)
        event = await self._record(
            session, topic, transition, actor.person_id, role, from_state, from_room, recorded, now
        )
        await link_uploads(session, transition, values, _id(topic), event.event_id)
        events = [event]
        await self._notify(session, topic, events)
        return events

    async def available_actions(
        self, session: AsyncSession, topic: Topic, actor: Actor
    ) -> list[str]:
        return await available_actions(session, topic, actor)

    # -- the parts of apply ------------------------------------------------------------

    async def _new_room(
        self,
        session: AsyncSession,
        topic: Topic,
        transition: Transition,
        values: Mapping[str, Any],
        chain: Sequence[Room],
    ) -> Room | None:
        if transition.moves == "to_room":
            target: Room = values["to_room"]
            if target.id == topic.room_id:
                raise InvalidField("same_room", room=target.name)
            if transition.action == "assign_room":  # the deciding room names a room below it
                if topic.room_id not in {r.id for r in await room_chain(session, _id(target))}:
                    raise InvalidField("outside_subtree", room=target.name, parent=chain[0].name)
            return target
        if transition.moves == "common_parent":
            other: Room = values["other_room"]
            if other.id == topic.room_id:
                raise InvalidField("same_room", room=other.name)
            parent = nearest_common_ancestor(chain, await room_chain(session, _id(other)))
            if parent is None:
                raise InvalidField("no_common_parent", room=chain[0].name, other=other.name)
            return parent
        return None

    async def _update(self, session: AsyncSession, topic: Topic, changes: dict[str, Any]) -> None:
        """Compare-and-set on ``version``: of two reviewers acting at once, one wins."""
        result = await session.exec(
            update(Topic)
            .where(col(Topic.id) == topic.id, col(Topic.version) == topic.version)
            .values(**changes, version=topic.version + 1)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise Conflict("conflict")
        for name, value in {**changes, "version": topic.version + 1}.items():
            set_committed_value(topic, name, value)

    async def _record(
        self,
        session: AsyncSession,
        topic: Topic,
        transition: Transition,
        actor_id: int | None,
        role: str,
        from_state: str | None,
        from_room: int | None,
        fields: dict[str, Any],
        now: datetime,
    ) -> DomainEvent:
        seq = 1  # the opening event (no state before it) is a topic's first
        if from_state is not None:
            last = await session.exec(
                select(func.max(TopicEvent.seq)).where(TopicEvent.topic_id == topic.id)
            )
            seq = (last.one() or 0) + 1
        row = TopicEvent(
            topic_id=_id(topic),
            seq=seq,
            actor_id=actor_id,
            actor_role=role,
            action=transition.action,
            from_state=from_state,
            to_state=topic.state,
            from_room_id=from_room if from_room != topic.room_id else None,
            room_id=topic.room_id,
            fields=fields,
            at=now,
        )
        session.add(row)
        await session.flush()
        return DomainEvent(
            name=f"topic.{transition.event}",
            topic_id=row.topic_id,
            event_id=_id(row),
            action=row.action,
            actor_id=actor_id,
            actor_role=role,
            from_state=from_state,
            to_state=row.to_state,
            from_room_id=row.from_room_id,
            room_id=row.room_id,
            fields=fields,
        )

    async def _notify(self, session: AsyncSession, topic: Topic, events: list[DomainEvent]) -> None:
        for listener in self.listeners:
            await listener(session, topic, events)

    async def _next_number(
        self, session: AsyncSession, chain: Sequence[Room], now: datetime
    ) -> str:
        """``PREFIX-YEAR-NNNNNN`` from an atomic per-prefix, per-year counter."""
        prefix, year = number_prefix(chain), now.astimezone(CHINA).year
        statement = (
            insert_for(session, TopicCounter)
            .values(prefix=prefix, year=year, last=1)
            .on_conflict_do_update(
                index_elements=["prefix", "year"], set_={"last": TopicCounter.last + 1}
            )
            .returning(col(TopicCounter.last))
        )
        seq = (await session.exec(statement)).scalar_one()
        return f"{prefix}-{year}-{seq:06d}"


async def available_actions(session: AsyncSession, topic: Topic, actor: Actor) -> list[str]:
    """The actions ``actor`` may take on ``topic`` now, in table order (for buttons)."""
    chain = [_id(r) for r in await room_chain(session, topic.room_id)]
    return [
        t.action
        for t in TRANSITIONS.values()
        if topic.state in t.sources
        and can(actor, t, topic, chain)
        and (not t.after or await _on_record(session, topic, t.after))
    ]


async def _on_record(session: AsyncSession, topic: Topic, actions: tuple[str, ...]) -> bool:
    """Is one of ``actions`` in the topic's history?"""
    found = await session.exec(
        select(TopicEvent.id)
        .where(TopicEvent.topic_id == topic.id, col(TopicEvent.action).in_(actions))
        .limit(1)
    )
    return found.first() is not None


def _id(row: Room | Topic | TopicEvent) -> int:
    assert row.id is not None, "row must be flushed first"
    return row.id
