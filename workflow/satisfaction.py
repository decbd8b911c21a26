"""“Is it solved?” (问题解决了吗？): the answers to the question asked once a topic's result
is implemented, and what they do.

- Who answers: the submitter (the person affected) and the topic's public — its followers,
  likers and suggesters, who hear of the result by push — counted apart.
- One answer per person and round (a round: one implementation, named by when the topic
  was marked implemented). A retry or a double tap of the same answer is the same answer;
  a different answer later is refused, so what was said stays said (a topic reopened and
  implemented again is asked anew). The only answer that may be replaced is the sweep's
  "unanswered" record: a late answer still counts.
- 不满意 needs a reason. The submitter's puts the topic back on the convener's to-do list:
  ``reopen`` (implemented → reopened, a clocked step), through ``Lifecycle.apply``. The
  public's 不满意 is counted and kept with its reason, and reopens nothing.
- Unanswered: the reminder sweep asks the submitter once more after
  ``satisfaction_after`` and records "unanswered" the same time after that
  (notices/reminders/satisfaction.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import exists, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import select_columns
from storage.models import Topic
from storage.participation import Follow, Like, Suggestion
from storage.satisfaction import SatisfactionAnswer
from storage.sql import insert_for
from workflow.engine import Lifecycle
from workflow.errors import InvalidField, MissingField, NotPermitted, WrongState
from workflow.fields import text_field
from workflow.lifecycle import SUBMITTER, State
from workflow.payloads import SATISFACTION, Pair
from workflow.permissions import Actor
from workflow.texts import label

#: The answers, in the order of their buttons (``sa:<topic>:<1|2|3>``).
ANSWERS = ("satisfied", "basically", "dissatisfied")
DISSATISFIED = "dissatisfied"
UNANSWERED = "unanswered"
REASON_MAX = 500
#: Who answered: the submitter, or someone of the topic's public.
PUBLIC = "public"


def round_of(topic: Topic) -> datetime:
    """The implementation being answered about: when the topic entered ``implemented``
    (a reopened topic keeps it until it is implemented again)."""
    return topic.step_started_at


def ask_buttons(topic_id: int) -> list[tuple[str, str]]:
    """满意 / 基本满意 / 不满意 for ``topic_id``, as (label, payload)."""
    return [
        (label("satisfaction", answer), SATISFACTION.build(Pair(topic_id, n)))
        for n, answer in enumerate(ANSWERS, 1)
    ]


def asked(event: str, topic_id: int) -> list[tuple[str, str]]:
    """The buttons a notice of ``event`` carries: the question, once it is implemented."""
    return ask_buttons(topic_id) if event == "topic.implemented" else []


def answer_of(pressed: Pair) -> str | None:
    """The answer a button stands for, or None (a forged number)."""
    return ANSWERS[pressed.second - 1] if 1 <= pressed.second <= len(ANSWERS) else None


async def answerer(session: AsyncSession, topic: Topic, person_id: int) -> str | None:
    """ "submitter", "public" (follows, likes or suggested on the topic) or None."""
    if person_id == topic.submitter_id:
        return SUBMITTER
    concerned = or_(
        exists().where(
            col(Follow.topic_id) == topic.id,
            col(Follow.person_id) == person_id,
            col(Follow.ended_at).is_(None),
        ),
        exists().where(
            col(Like.topic_id) == topic.id,
            col(Like.person_id) == person_id,
            col(Like.active).is_(True),
        ),
        exists().where(
            col(Suggestion.topic_id) == topic.id, col(Suggestion.person_id) == person_id
        ),
    )
    found = (await session.exec(select(concerned))).one()
    return PUBLIC if found else None


async def _existing(
    session: AsyncSession, topic: Topic, person_id: int
) -> SatisfactionAnswer | None:
    return (
        await session.exec(
            select(SatisfactionAnswer).where(
                col(SatisfactionAnswer.topic_id) == topic.id,
                col(SatisfactionAnswer.round) == round_of(topic),
                col(SatisfactionAnswer.person_id) == person_id,
            )
        )
    ).first()


async def may_answer(session: AsyncSession, topic: Topic, person_id: int) -> str:
    """Who ``person_id`` answers as; refuses a topic not implemented, a person not
    concerned, and a second answer."""
    if topic.state != State.IMPLEMENTED:
        raise WrongState("satisfaction_not_implemented", state=label("states", topic.state))
    who = await answerer(session, topic, person_id)
    if who is None:
        raise NotPermitted("satisfaction_not_concerned")
    before = await _existing(session, topic, person_id)
    if before is not None and before.answer != UNANSWERED:
        raise InvalidField("satisfaction_answered", answer=label("satisfaction", before.answer))
    return who


@dataclass(frozen=True)
class Answered:
    answer: str
    #: The same answer was already on record (a retry, a double tap): nothing new.
    again: bool = False
    #: The submitter's 不满意 reopened the topic.
    reopened: bool = False


async def answer(
    session: AsyncSession,
    lifecycle: Lifecycle,
    topic: Topic,
    actor: Actor,
    given: str,
    now: datetime,
    reason: str = "",
) -> Answered:
    """Record ``actor``'s answer (and reopen on the submitter's 不满意); raises a
    ``WorkflowError`` to refuse, having changed nothing."""
    assert actor.person_id is not None and topic.id is not None
    if given not in ANSWERS:
        raise InvalidField("satisfaction_unknown")
    before = await _existing(session, topic, actor.person_id)
    if before is not None and before.answer == given:
        return Answered(given, again=True)
    who = await may_answer(session, topic, actor.person_id)
    text = ""
    if given == DISSATISFIED:
        if not reason.strip():
            raise MissingField("satisfaction_reason")
        text = text_field("reason", reason, REASON_MAX)
    values = {
        "topic_id": topic.id,
        "round": round_of(topic),  # read before reopening moves the step on
        "person_id": actor.person_id,
        "answerer": who,
        "answer": given,
        "reason": text or None,
        "at": now,
    }
    # Reopened first: the lifecycle refuses before it writes anything, so a refusal there
    # leaves no answer behind; nothing after it refuses.
    reopened = given == DISSATISFIED and who == SUBMITTER
    if reopened:
        await lifecycle.apply(session, topic, "reopen", actor, reason=text)
    if before is not None:  # replacing the sweep's "unanswered"
        before.answer, before.reason, before.at, before.answerer = given, text or None, now, who
        session.add(before)
        await session.flush()
        return Answered(given, reopened=reopened)
    inserted = await session.exec(
        insert_for(session, SatisfactionAnswer)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["topic_id", "round", "person_id"])
        .returning(col(SatisfactionAnswer.id))
    )
    # None: the same person's answer an instant earlier (another process): that one stands.
    return Answered(given, again=inserted.scalar_one_or_none() is None, reopened=reopened)


# -- what is shown (the topic's page, ``topics show``) ------------------------------------


@dataclass
class Round:
    """One implementation's answers."""

    round: datetime
    submitter: str | None = None  # the submitter's answer, or None while not given
    submitter_reason: str | None = None
    public: Counter[str] = field(default_factory=Counter)
    #: Every answer with its reason, oldest first (for the operators, never the page).
    answers: list[SatisfactionAnswer] = field(default_factory=list)


async def rounds(session: AsyncSession, topic_id: int) -> list[Round]:
    """The answers about ``topic_id``, one ``Round`` per implementation, oldest first."""
    rows = (
        await session.exec(
            select(SatisfactionAnswer)
            .where(col(SatisfactionAnswer.topic_id) == topic_id)
            .order_by(col(SatisfactionAnswer.round), col(SatisfactionAnswer.id))
        )
    ).all()
    found: dict[datetime, Round] = {}
    for row in rows:
        shown = found.setdefault(row.round, Round(row.round))
        shown.answers.append(row)
        if row.answerer == SUBMITTER:
            shown.submitter, shown.submitter_reason = row.answer, row.reason
        else:
            shown.public[row.answer] += 1
    return list(found.values())


# -- the sweep's questions -----------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """An implemented topic whose submitter has not answered this round."""

    topic_id: int
    number: str
    title: str
    room_id: int
    submitter_id: int
    round: datetime


async def waiting(session: AsyncSession, implemented_before: datetime) -> list[Waiting]:
    """Implemented before ``implemented_before``, the submitter's answer still missing
    (an anti-join on the answers; ``ix_topics_state_due`` leads with the state)."""
    answered = exists().where(
        col(SatisfactionAnswer.topic_id) == Topic.id,
        col(SatisfactionAnswer.round) == Topic.step_started_at,
        col(SatisfactionAnswer.person_id) == Topic.submitter_id,
    )
    rows = await session.exec(
        select_columns(
            Topic.id,
            Topic.number,
            Topic.title,
            Topic.room_id,
            Topic.submitter_id,
            Topic.step_started_at,
        )
        .where(
            Topic.state == State.IMPLEMENTED,
            col(Topic.submitter_id).is_not(None),
            col(Topic.step_started_at) <= implemented_before,
            ~answered,
        )
        .order_by(col(Topic.step_started_at), col(Topic.id))
    )
    return [Waiting(*row) for row in rows]


async def record_unanswered(session: AsyncSession, items: list[Waiting], now: datetime) -> int:
    """The sweep's "unanswered" for each submitter of ``items`` (once: the unique key)."""
    if not items:
        return 0
    result = await session.exec(
        insert_for(session, SatisfactionAnswer)
        .values(
            [
                {
                    "topic_id": item.topic_id,
                    "round": item.round,
                    "person_id": item.submitter_id,
                    "answerer": SUBMITTER,
                    "answer": UNANSWERED,
                    "reason": None,
                    "at": now,
                }
                for item in items
            ]
        )
        .on_conflict_do_nothing(index_elements=["topic_id", "round", "person_id"])
    )
    return int(result.rowcount or 0)
