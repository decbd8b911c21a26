"""The topic lifecycle of the “8+4” process as one table.

Read ``TRANSITIONS`` top to bottom and you have the process: who may do what, in which
state, with which fields, where the topic goes and whether a five-working-day review clock
starts. ``workflow.engine.Lifecycle.apply`` is the only code that acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Literal


class State(StrEnum):
    SUBMITTED = "submitted"  # waiting for the convener's first review (初审)
    REFERRED = "referred"  # jurisdiction disputed: the common parent room names the room
    AWAITING_APPROVAL = "awaiting_approval"  # Party organisation's second review (复审审定)
    APPROVED = "approved"
    PUBLICIZED = "publicized"  # 码上建议: public suggestions
    RESEARCHING = "researching"  # 商前调研
    MEETING_SCHEDULED = "meeting_scheduled"  # 码上协商
    OUTCOME_REVIEW = "outcome_review"  # 成果审核
    OUTCOME_APPROVED = "outcome_approved"
    RESULTS_PUBLISHED = "results_published"  # 码上查情, being implemented
    AWAITING_REPLY = "awaiting_reply"  # a department's written reply is due (004 §4(四))
    REOPENED = "reopened"  # the submitter said 不满意: the convener follows it up again
    IMPLEMENTED = "implemented"
    DECLINED = "declined"
    REDIRECTED = "redirected"
    WITHDRAWN = "withdrawn"


FINAL_STATES = frozenset({State.IMPLEMENTED, State.DECLINED, State.REDIRECTED, State.WITHDRAWN})

#: From publication (码上建议) on, a topic belongs to the public notice board: it has a
#: public page and links to it may be sent. Before that, and when withdrawn, declined or
#: redirected, it is the submitter's and the reviewers' business only.
PUBLIC_STATES = frozenset(
    {
        State.PUBLICIZED,
        State.RESEARCHING,
        State.MEETING_SCHEDULED,
        State.OUTCOME_REVIEW,
        State.OUTCOME_APPROVED,
        State.RESULTS_PUBLISHED,
        State.AWAITING_REPLY,
        State.REOPENED,
        State.IMPLEMENTED,
    }
)


#: From result publication (码上查情) on: the results, being carried out or done.
RESULT_STATES = frozenset(
    {State.RESULTS_PUBLISHED, State.AWAITING_REPLY, State.REOPENED, State.IMPLEMENTED}
)


def public_url(base_url: str, number: str, state: str) -> str:
    """The topic's public page, or "" while it has none (nothing to link to)."""
    return f"{base_url.rstrip('/')}/t/{number}" if state in PUBLIC_STATES else ""


class Role(StrEnum):
    CONVENER = "convener"
    PARTY = "party"
    OPERATOR = "operator"
    MEMBER = "member"
    GRID = "grid"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    #: Someone of the body carrying out a room's results (a department's contact, invited
    #: like any role): posts progress and the department's written reply.
    IMPLEMENTER = "implementer"


#: Not a granted role: the person who submitted the topic.
SUBMITTER = "submitter"


class Source(StrEnum):
    PUBLIC = "public"  # 公开征题, by scanning a room's code
    MEMBER = "member"  # 委员荐题
    PARTY = "party"  # 党政点题
    GRID = "grid"  # 网格推题
    HOTLINE = "hotline"  # 12345 / petition systems through the intake API


#: Who may open a topic from each source (in the topic's room); None: anybody.
SOURCE_ROLES: dict[Source, frozenset[Role] | None] = {
    Source.PUBLIC: None,
    Source.MEMBER: frozenset({Role.MEMBER}),
    Source.PARTY: frozenset({Role.PARTY}),
    Source.GRID: frozenset({Role.GRID}),
    Source.HOTLINE: frozenset({Role.ADMIN}),
}

#: The five categories of the first review (000 §10); the last one goes on to consultation.
CONSULTATION = "协商议事"
CATEGORIES = ("信访求决", "涉法涉诉", "意见建议", "提案或社情民意线索", CONSULTATION)
#: What a topic outside consultation scope is handled as.
REDIRECT_KINDS = CATEGORIES[:4]

TITLE_MAX = 40
BACKGROUND_MAX = 2000
#: A meeting lasts this long (its end closes the live window and the join link); the
#: video link is sent and shown from ``LIVE_BEFORE`` before its start (as Decidim does).
MEETING_LENGTH = timedelta(hours=2)
LIVE_BEFORE = timedelta(minutes=10)
#: Suggestions on a publicized topic close this many days after publication unless the
#: convener sets another day; the meeting may not be held earlier than a week after
#: publication (Yancheng norms §14).
SUGGESTION_DAYS = 7
MEETING_AFTER_PUBLICATION = timedelta(days=7)
#: Photos of one meeting sent in the chat (the minutes on paper, the room, the people).
MEETING_PHOTOS_MAX = 9


@dataclass(frozen=True)
class FieldSpec:
    kind: Literal["text", "choice", "room", "datetime", "date", "url", "photos", "uploads"]
    max_len: int = 0
    choices: tuple[str, ...] = ()
    #: A date field left out is this many days after today (China time); 0: no default.
    default_days: int = 0
    #: A date that must lie after today (a due date, a deadline).
    future: bool = False
    #: Dates offered as buttons, as days after today (typing another works too).
    presets: tuple[int, ...] = ()


#: Every field an action can take, declared once; labels are in zh_CN.toml [fields].
FIELDS: dict[str, FieldSpec] = {
    # Accepting a topic (受理) classifies it as a matter for consultation; the other four
    # categories are handled outside consultation (redirect's ``kind``), 000 §10.
    "category": FieldSpec("choice", choices=(CONSULTATION,)),
    "kind": FieldSpec("choice", choices=REDIRECT_KINDS),
    "reason": FieldSpec("text", 500),
    "contact_record": FieldSpec("text", 200),
    "handling": FieldSpec("text", 1000),
    "feedback": FieldSpec("text", 1000),
    "to_room": FieldSpec("room"),
    "other_room": FieldSpec("room"),
    "comment": FieldSpec("text", 500),
    "title": FieldSpec("text", TITLE_MAX),
    "background": FieldSpec("text", BACKGROUND_MAX),
    "plan": FieldSpec("text", 1000),
    "findings": FieldSpec("text", 4000),
    "research_when": FieldSpec("text", 100),
    "research_place": FieldSpec("text", 200),
    "time": FieldSpec("datetime"),
    "place": FieldSpec("text", 200),
    "link": FieldSpec("url", 500),
    "agenda": FieldSpec("text", 2000),
    "materials": FieldSpec("text", 2000),
    "consensus": FieldSpec("text", 4000),
    "implementer": FieldSpec("text", 200),
    "measures": FieldSpec("text", 2000),
    "due": FieldSpec("date", future=True, presets=(30, 90, 180)),
    "note": FieldSpec("text", 1000),
    "summary": FieldSpec("text", 1000),
    "suggestions_close": FieldSpec("date", default_days=SUGGESTION_DAYS),
    # The topic's photos the public may see (attachment ids); none unless chosen.
    "photos": FieldSpec("photos"),
    # After the meeting (000 §14): the minutes, and photos sent in the chat during the step
    # (attachment ids, linked to the topic and the event when it is taken).
    "minutes": FieldSpec("text", 4000),
    "meeting_photos": FieldSpec("uploads", max_len=MEETING_PHOTOS_MAX),
    # A department's written reply (004 §4(四)): who, by when, and what it said.
    "department": FieldSpec("text", 200),
    "reply_due": FieldSpec("date", future=True, presets=(15, 30)),
    "reply": FieldSpec("text", 4000),
}


@dataclass(frozen=True)
class Transition:
    action: str
    sources: frozenset[State]
    target: State
    roles: frozenset[str]
    event: str  # domain event name, "topic.<event>"; doubles as the notice template name
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    clock: bool = False  # the target state starts a five-working-day review clock
    moves: Literal["to_room", "common_parent"] | None = None  # where the topic's room goes
    #: Actions one of which must already be on record (无调研不协商: findings recorded, or
    #: the convener's recorded reason for going without).
    after: tuple[str, ...] = ()
    stamps: Literal["published_at", "results_published_at"] | None = None  # set to now
    #: A date field whose day ends the clock, instead of five working days (a deadline).
    deadline: str | None = None


def _t(
    action: str, sources: set[State], target: State, roles: set[str], event: str, **rest: object
) -> Transition:
    return Transition(action, frozenset(sources), target, frozenset(roles), event, **rest)  # type: ignore[arg-type]


S, C, P, OP, SUP = State, Role.CONVENER, Role.PARTY, Role.OPERATOR, Role.SUPERVISOR
IM = Role.IMPLEMENTER
#: Being carried out: results published, or reopened after the submitter's 不满意.
IMPLEMENTING = {S.RESULTS_PUBLISHED, S.REOPENED}
OPEN_BEFORE_PUBLICATION = {S.SUBMITTED, S.REFERRED, S.AWAITING_APPROVAL, S.APPROVED}

# fmt: off
TRANSITIONS: dict[str, Transition] = {t.action: t for t in (
    # action               from                     to                   who       event
    _t("screen_accept",    {S.SUBMITTED},           S.AWAITING_APPROVAL, {C},      "accepted",
       required=("category", "reason"), clock=True),
    _t("decline",          {S.SUBMITTED},           S.DECLINED,          {C},      "declined",
       required=("reason", "contact_record")),
    _t("redirect",         {S.SUBMITTED},           S.REDIRECTED,        {C},      "redirected",
       required=("kind", "handling", "feedback")),
    _t("transfer",         {S.SUBMITTED},           S.SUBMITTED,         {C},      "transferred",
       required=("to_room", "reason"), clock=True, moves="to_room"),
    _t("refer_to_parent",  {S.SUBMITTED},           S.REFERRED,          {C},      "referred",
       required=("other_room", "reason"), clock=True, moves="common_parent"),
    _t("assign_room",      {S.REFERRED},            S.SUBMITTED,         {C, SUP}, "assigned",
       required=("to_room", "reason"), clock=True, moves="to_room"),
    _t("approve",          {S.AWAITING_APPROVAL},   S.APPROVED,          {P},      "approved",
       optional=("title", "background")),
    _t("send_back",        {S.AWAITING_APPROVAL},   S.SUBMITTED,         {P},      "sent_back",
       required=("comment",), clock=True),
    _t("publish",          {S.APPROVED},            S.PUBLICIZED,        {C},      "publicized",
       optional=("suggestions_close", "photos"), stamps="published_at"),
    # The plan says what and whom (plan), when and where; the people taking part are named
    # and confirm in the chat (dialogs/research.py).
    _t("plan_research",    {S.PUBLICIZED},          S.RESEARCHING,       {C, OP},  "research_planned",
       required=("plan",), optional=("research_when", "research_place")),
    _t("record_findings",  {S.RESEARCHING},         S.RESEARCHING,       {C, OP},  "findings_recorded",
       required=("findings",)),
    # No research, no consultation (000 §13) — unless the convener records why not.
    _t("skip_research",    {S.PUBLICIZED, S.RESEARCHING},
                                                    S.RESEARCHING,       {C},      "research_skipped",
       required=("reason",)),
    # Scheduling again reschedules the topic's meeting (workflow/meetings.py keeps it).
    _t("schedule_meeting", {S.RESEARCHING, S.MEETING_SCHEDULED},
                                                    S.MEETING_SCHEDULED, {C},      "meeting_scheduled",
       required=("time", "place"), optional=("link", "agenda", "materials"),
       after=("record_findings", "skip_research")),
    _t("cancel_meeting",   {S.MEETING_SCHEDULED},   S.RESEARCHING,       {C},      "meeting_cancelled",
       required=("reason",)),
    _t("record_meeting",   {S.MEETING_SCHEDULED},   S.OUTCOME_REVIEW,    {C, OP},  "meeting_recorded",
       required=("consensus",), optional=("minutes", "meeting_photos"), clock=True),
    _t("approve_outcome",  {S.OUTCOME_REVIEW},      S.OUTCOME_APPROVED,  {P},      "outcome_approved",
       required=("implementer", "measures", "due")),
    # Back to the convener, who records the outcome again (or holds another meeting).
    _t("send_back_outcome", {S.OUTCOME_REVIEW},     S.MEETING_SCHEDULED, {P},      "outcome_sent_back",
       required=("comment",)),
    _t("publish_results",  {S.OUTCOME_APPROVED},    S.RESULTS_PUBLISHED, {C},      "results_published",
       stamps="results_published_at"),
    _t("record_progress",  IMPLEMENTING,            S.RESULTS_PUBLISHED, {C, OP, IM}, "progress_recorded",
       required=("note",)),
    # A department answers in writing by a deadline (004 §4(四)): a clocked step of its own.
    _t("request_reply",    IMPLEMENTING,            S.AWAITING_REPLY,    {C, OP},  "reply_requested",
       required=("department", "reply_due"), clock=True, deadline="reply_due"),
    _t("record_reply",     {S.AWAITING_REPLY},      S.RESULTS_PUBLISHED, {C, OP, IM}, "reply_recorded",
       required=("reply",)),
    _t("complete",         IMPLEMENTING,            S.IMPLEMENTED,       {C},      "implemented",
       required=("summary",)),
    # The submitter's 不满意 (workflow/satisfaction.py): back on the convener's list.
    _t("reopen",           {S.IMPLEMENTED},         S.REOPENED,          {SUBMITTER}, "reopened",
       required=("reason",), clock=True),
    _t("withdraw",         OPEN_BEFORE_PUBLICATION, S.WITHDRAWN,         {SUBMITTER}, "withdrawn",
       optional=("reason",)),
)}
# fmt: on

#: Opening a topic is recorded like any action; its clock is the first review.
SUBMIT = Transition("submit", frozenset(), State.SUBMITTED, frozenset(), "submitted", clock=True)

#: States in which a five-working-day review clock runs (for sweeps and to-do lists).
CLOCKED_STATES = frozenset({SUBMIT.target} | {t.target for t in TRANSITIONS.values() if t.clock})
