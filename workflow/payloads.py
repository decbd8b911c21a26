"""Every button payload and start payload the service makes, each kind declared once.

A payload is what a pressed button (Telegram ``callback_data``, a WeChat menu option, a
typed number) or a start (a Telegram ``/start`` link, a WeChat scene string) brings back.
Buttons already sent carry these strings, so they never change: a kind is renamed here
only in Python. ``Payload`` holds the buttons that carry nothing but themselves; a
``Ref`` is a prefix and a typed value (``TOPIC.build(12)`` is ``"t:12"``,
``TOPIC.parse("t:12")`` is ``12``; a garbled one parses to None).

It lives in workflow/, not dialogs/, because the cards (workflow/cards.py) and the
reminders (notices/) build buttons too, and neither may import dialogs/. Which dialog
handles each kind is declared by the dialog modules (dialogs/handlers.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Telegram refuses a longer ``callback_data``; a start parameter is shorter still (64
#: characters of [A-Za-z0-9_-]), checked where links are made.
MAX_BYTES = 64


@dataclass(frozen=True)
class Button:
    """An offered button: what it says and the payload it brings back when pressed. Here
    because dialogs' replies and notices' outgoing messages both carry buttons, and
    neither of those packages may import the other."""

    label: str
    payload: str  # opaque, at most MAX_BYTES (Telegram callback_data)


class Payload(StrEnum):
    """Buttons without a value: the payload is the whole string."""

    # The menu (dialogs/home.py, my_topics.py, submit_topic.py, review.py).
    MENU = "m:menu"
    MENU_MINE = "m:mine"
    MENU_ROOM = "m:room"
    MENU_SUBMIT = "m:submit"
    MENU_MEMBER = "m:member"
    MENU_PARTY = "m:party"
    MENU_GRID = "m:grid"
    MENU_TODO = "m:todo"
    # The steps of 提议题 (dialogs/submit_topic.py).
    SUBMIT_NEXT = "s:next"
    SUBMIT_SKIP = "s:skip"
    SUBMIT_CONFIRM = "s:confirm"
    SUBMIT_EDIT = "s:edit"
    SUBMIT_COSIGN = "s:cosign"
    SUBMIT_CANCEL = "s:cancel"
    SUBMIT_DONE = "s:done"
    EDIT_TITLE = "e:title"
    EDIT_DESCRIPTION = "e:description"
    EDIT_RESIDENT = "e:resident"
    EDIT_PHONE = "e:phone"
    # An optional field of a review step left out, a choice of several confirmed
    # (dialogs/review.py).
    REVIEW_SKIP = "k:skip"
    REVIEW_DONE = "k:done"
    # The convener's suggestions awaiting a decision (dialogs/moderation.py).
    MENU_MODERATION = "m:held"
    # The convener's new poll: done picking topics (dialogs/polls.py).
    MENU_POLL = "m:poll"
    POLL_DONE = "q:done"
    # Registering for a meeting (dialogs/join_meeting.py): the name the chat has, no place.
    JOIN_SAME_NAME = "mj:name"
    JOIN_NO_ZONE = "mj:nozone"
    # The research participants picked, the findings' photos and files all sent
    # (dialogs/research.py).
    RESEARCH_DONE = "y:done"


@dataclass(frozen=True)
class Ref(Generic[T]):
    """Payloads ``prefix + value``: ``decode`` gives the value of the rest, or None when
    it is garbled; ``encode`` writes it."""

    name: str
    prefix: str
    decode: Callable[[str], T | None]
    encode: Callable[[T], str] = str

    def build(self, value: T) -> str:
        return self.prefix + self.encode(value)

    def claims(self, payload: str) -> bool:
        """Is ``payload`` of this kind (well-formed or not)?"""
        return payload.startswith(self.prefix)

    def parse(self, payload: str) -> T | None:
        """The value ``payload`` carries; None if it is not of this kind or garbled."""
        return self.decode(payload[len(self.prefix) :]) if self.claims(payload) else None


def _number(text: str) -> int | None:
    return int(text) if text.isdecimal() else None


def _text(text: str) -> str:
    return text


@dataclass(frozen=True)
class JointAnswer:
    """A co-signer's 确认联名 / 不联名 (dialogs/joint.py): ``agrees`` is None when the
    answer is neither (a forged button, refused as such)."""

    token: str
    agrees: bool | None


def _joint(text: str) -> JointAnswer:
    token, _, answer = text.rpartition(":")
    return JointAnswer(token, {"y": True, "n": False}.get(answer))


def _joint_encode(answer: JointAnswer) -> str:
    return f"{answer.token}:{'y' if answer.agrees else 'n'}"


#: A later page of the to-do list (``m:todo:<page>``, dialogs/review.py).
TODO_PAGE = Ref("todo_page", "m:todo:", _number)
#: A room found by a search (dialogs/home.py); the value is the room's code.
ROOM = Ref("room", "room:", _text)
#: The submitter's view of a topic, asking to withdraw it, confirming (dialogs/my_topics.py,
#: and the reminders' "查看议题").
TOPIC = Ref("topic", "t:", _number)
WITHDRAW = Ref("withdraw", "w:", _number)
WITHDRAW_YES = Ref("withdraw_yes", "wy:", _number)
#: A topic's review card with its action buttons (dialogs/review.py, the reminders' nudge).
CARD = Ref("card", "o:", _number)
#: A review action: only a ``ButtonRef`` token (workflow/cards.py), checked on every press.
REVIEW = Ref("review", "b:", _text)
#: A co-signer's answer to a joint recommendation (dialogs/joint.py).
JOINT = Ref("joint", "cs:", _joint, _joint_encode)
#: The answers to a review step's questions: the n-th choice, a room's code.
REVIEW_CHOICE = Ref("review_choice", "v:", _number)
REVIEW_ROOM = Ref("review_room", "r:", _text)
#: 委员荐题: a member chosen (or no longer chosen) as co-signer, by person id.
COSIGNER = Ref("cosigner", "j:", _number)


@dataclass(frozen=True)
class Setting:
    """A button that sets something on or off (``lk:12:1``): a SET, never a flip, so the
    same button pressed twice does what it says once."""

    id: int
    on: bool


def _setting(text: str) -> Setting | None:
    value, _, flag = text.rpartition(":")
    if not value.isdecimal() or flag not in ("0", "1"):
        return None
    return Setting(int(value), flag == "1")


def _setting_encode(setting: Setting) -> str:
    return f"{setting.id}:{int(setting.on)}"


@dataclass(frozen=True)
class Pair:
    """Two numbers: a room's list and its page, a poll and its option."""

    first: int
    second: int


def _pair(text: str) -> Pair | None:
    first, _, second = text.partition(":")
    return Pair(int(first), int(second)) if first.isdecimal() and second.isdecimal() else None


def _pair_encode(pair: Pair) -> str:
    return f"{pair.first}:{pair.second}"


@dataclass(frozen=True)
class Decision:
    """The convener on a suggestion (dialogs/moderation.py): ``verb`` "" opens it, "h"
    hides it, "r" restores it (each then asks for the reason)."""

    suggestion_id: int
    verb: str


def _decision(text: str) -> Decision | None:
    value, _, verb = text.partition(":")
    if not value.isdecimal() or verb not in ("", "h", "r"):
        return None
    return Decision(int(value), verb)


def _decision_encode(decision: Decision) -> str:
    number = str(decision.suggestion_id)
    return f"{number}:{decision.verb}" if decision.verb else number


#: The public's part (dialogs/public_topics.py, suggest.py, moderation.py, polls.py; the
#: pushes carry FOLLOW_TOPIC/FOLLOW_ROOM off-buttons, which work from any message).
#: A publicized topic's public view, by topic id.
PUBLIC_TOPIC = Ref("public_topic", "pt:", _number)
#: A room's publicized topics, page N: ``pl:<room_id>:<page>``.
PUBLIC_LIST = Ref("public_list", "pl:", _pair, _pair_encode)
#: 点赞 / 取消点赞: ``lk:<topic_id>:1|0``.
LIKE = Ref("like", "lk:", _setting, _setting_encode)
#: 关注 / 取消关注 a topic, a room: ``ft:<topic_id>:1|0``, ``fr:<room_id>:1|0``.
FOLLOW_TOPIC = Ref("follow_topic", "ft:", _setting, _setting_encode)
FOLLOW_ROOM = Ref("follow_room", "fr:", _setting, _setting_encode)
#: 提建议 on a topic (asks for the text), by topic id.
SUGGEST = Ref("suggest", "sg:", _number)
#: A topic's visible suggestions, page N: ``sl:<topic_id>:<page>``.
SUGGESTIONS = Ref("suggestions", "sl:", _pair, _pair_encode)
#: 举报 a suggestion, by suggestion id.
REPORT = Ref("report", "rp:", _number)
#: The convener's decision on a suggestion: ``md:<id>``, ``md:<id>:h``, ``md:<id>:r``.
MODERATE = Ref("moderate", "md:", _decision, _decision_encode)
#: A screening poll's vote: ``pv:<poll_id>:<option_id>``; ``pv:<poll_id>:0`` shows it.
POLL_VOTE = Ref("poll_vote", "pv:", _pair, _pair_encode)
#: The convener's new poll: a candidate topic picked (or unpicked), by topic id.
POLL_PICK = Ref("poll_pick", "pk:", _number)
#: “Is it solved?” once a topic is implemented: ``sa:<topic_id>:<1|2|3>`` (满意, 基本满意,
#: 不满意; workflow/satisfaction.py, dialogs/satisfaction.py).
SATISFACTION = Ref("satisfaction", "sa:", _pair, _pair_encode)

#: Research (dialogs/research.py): naming its participants for a topic (by topic id), one
#: of them picked or unpicked (``yp:<topic>:<person>``), a named person's confirmation (by
#: research participant id), uploading the findings' photos and files (by topic id).
RESEARCH_NAME = Ref("research_name", "yn:", _number)
RESEARCH_PICK = Ref("research_pick", "yp:", _pair, _pair_encode)
RESEARCH_CONFIRM = Ref("research_confirm", "yc:", _number)
FINDINGS_MEDIA = Ref("findings_media", "yf:", _number)
#: Inviting named people to a topic's meeting (the same picking, by topic id); an
#: invitation's 报名参会 button (by the meeting's join code, as its link).
MEETING_INVITE = Ref("meeting_invite", "yi:", _number)
MEETING_JOIN = Ref("meeting_join", "mr:", lambda code: code or None)
#: A meeting's video link asked for (shown only in its live window), by meeting id.
MEETING_LINK = Ref("meeting_link", "ml:", _number)

#: Start payloads (a Telegram ``/start`` parameter, a WeChat scene string).
#: A room's code (its QR code and link, bot/qr.py).
START_ROOM = Ref("start_room", "r_", lambda code: code or None)
#: A role invite's secret (workflow/invites.py, bot/invites.py).
START_INVITE = Ref("start_invite", "i_", _text)
#: A publicized topic's deep link / WeChat scene, by topic number (D1-2026-000001).
START_TOPIC = Ref("start_topic", "p_", lambda number: number or None)
#: A meeting's public join link / temporary WeChat code, by its code (workflow/meetings.py).
START_MEETING = Ref("start_meeting", "m_", lambda code: code or None)
#: Anything else: a plain follow, ``/start`` alone, a scene no longer made.
START_PLAIN = Ref("start_plain", "", _text)

Kind = Payload | Ref[Any]


class Registry:
    """Payload kinds that may not overlap: a payload is of one kind at most."""

    def __init__(self, fixed: Iterable[Payload], refs: Iterable[Ref[Any]]) -> None:
        self.fixed = {p.value: p for p in fixed}
        # Longest prefix first, so that a prefix of another (none today) cannot take its
        # payloads; overlaps are refused below anyway.
        self.refs = sorted(refs, key=lambda r: len(r.prefix), reverse=True)
        names = [p.name for p in self.fixed.values()] + [r.name for r in self.refs]
        if len(set(names)) != len(names):
            raise ValueError(f"a payload kind named twice: {sorted(names)}")
        for ref in self.refs:
            for other in self.refs:
                if other is not ref and other.prefix.startswith(ref.prefix) and ref.prefix:
                    raise ValueError(f"{other.name} ({other.prefix!r}) is under {ref.name}")
            for payload in self.fixed:
                if ref.prefix and payload.startswith(ref.prefix):
                    raise ValueError(f"{payload!r} is of two kinds: fixed and {ref.name}")

    def kind(self, payload: str) -> Kind | None:
        """The kind ``payload`` is of (well-formed or not), or None: not one of ours."""
        if payload in self.fixed:
            return self.fixed[payload]
        return next((r for r in self.refs if r.claims(payload)), None)

    @property
    def kinds(self) -> list[Kind]:
        return [*self.fixed.values(), *self.refs]


BUTTONS = Registry(
    Payload,
    [
        TODO_PAGE,
        ROOM,
        TOPIC,
        WITHDRAW,
        WITHDRAW_YES,
        CARD,
        REVIEW,
        JOINT,
        REVIEW_CHOICE,
        REVIEW_ROOM,
        COSIGNER,
        PUBLIC_TOPIC,
        PUBLIC_LIST,
        LIKE,
        FOLLOW_TOPIC,
        FOLLOW_ROOM,
        SUGGEST,
        SUGGESTIONS,
        REPORT,
        MODERATE,
        POLL_VOTE,
        POLL_PICK,
        MEETING_LINK,
        RESEARCH_NAME,
        RESEARCH_PICK,
        RESEARCH_CONFIRM,
        FINDINGS_MEDIA,
        MEETING_INVITE,
        MEETING_JOIN,
        SATISFACTION,
    ],
)
STARTS = Registry([], [START_ROOM, START_INVITE, START_TOPIC, START_MEETING, START_PLAIN])
