"""The payload registry (workflow/payloads.py) and the router of the dialogs' tables
(dialogs/handlers.py): every kind round-trips, buttons already sent still parse, two
modules claiming the same thing are refused at start-up, and what nobody takes gets the
answer it always got."""

from __future__ import annotations

from typing import Any

import pytest

from bot.services import Services
from dialogs.conversation import Conversation
from dialogs.handlers import Conflict, Flow, Handlers, on
from dialogs.router import HANDLERS, Dialogs
from tests import test_review
from tests.test_review import Reviewer, texts
from tests.world import World
from workflow.payloads import (
    BUTTONS,
    CARD,
    COSIGNER,
    FINDINGS_MEDIA,
    FOLLOW_ROOM,
    FOLLOW_TOPIC,
    JOINT,
    LIKE,
    MEETING_INVITE,
    MEETING_JOIN,
    MEETING_LINK,
    MODERATE,
    POLL_PICK,
    POLL_VOTE,
    PUBLIC_LIST,
    PUBLIC_TOPIC,
    REPORT,
    RESEARCH_CONFIRM,
    RESEARCH_NAME,
    RESEARCH_PICK,
    REVIEW,
    REVIEW_CHOICE,
    REVIEW_ROOM,
    ROOM,
    SATISFACTION,
    START_INVITE,
    START_MEETING,
    START_PLAIN,
    START_ROOM,
    START_TOPIC,
    STARTS,
    SUGGEST,
    SUGGESTIONS,
    TODO_PAGE,
    TOPIC,
    WITHDRAW,
    WITHDRAW_YES,
    Decision,
    JointAnswer,
    Pair,
    Payload,
    Ref,
    Registry,
    Setting,
)

# The review tests' fixtures: the demo-like world and services over the test database.
world, services = test_review.world, test_review.services


#: Payloads as buttons and links already sent carry them, with what each must mean.
SENT: list[tuple[str, Any, Any]] = [
    ("m:todo:3", TODO_PAGE, 3),
    ("room:V1", ROOM, "V1"),
    ("t:12", TOPIC, 12),
    ("w:12", WITHDRAW, 12),
    ("wy:12", WITHDRAW_YES, 12),
    ("o:7", CARD, 7),
    ("b:Zx-9_token", REVIEW, "Zx-9_token"),
    ("cs:tok:en:y", JOINT, JointAnswer("tok:en", True)),
    ("cs:token:n", JOINT, JointAnswer("token", False)),
    ("v:0", REVIEW_CHOICE, 0),
    ("r:S1", REVIEW_ROOM, "S1"),
    ("j:42", COSIGNER, 42),
    ("pt:12", PUBLIC_TOPIC, 12),
    ("pl:5:2", PUBLIC_LIST, Pair(5, 2)),
    ("lk:12:1", LIKE, Setting(12, True)),
    ("lk:12:0", LIKE, Setting(12, False)),
    ("ft:12:0", FOLLOW_TOPIC, Setting(12, False)),
    ("fr:5:1", FOLLOW_ROOM, Setting(5, True)),
    ("sg:12", SUGGEST, 12),
    ("sl:12:1", SUGGESTIONS, Pair(12, 1)),
    ("rp:30", REPORT, 30),
    ("md:30", MODERATE, Decision(30, "")),
    ("md:30:h", MODERATE, Decision(30, "h")),
    ("md:30:r", MODERATE, Decision(30, "r")),
    ("pv:3:9", POLL_VOTE, Pair(3, 9)),
    ("pk:12", POLL_PICK, 12),
    ("ml:4", MEETING_LINK, 4),
    ("yn:12", RESEARCH_NAME, 12),
    ("yp:12:7", RESEARCH_PICK, Pair(12, 7)),
    ("yc:3", RESEARCH_CONFIRM, 3),
    ("yf:12", FINDINGS_MEDIA, 12),
    ("yi:12", MEETING_INVITE, 12),
    ("mr:a7k2mx9pqr", MEETING_JOIN, "a7k2mx9pqr"),
    ("sa:12:3", SATISFACTION, Pair(12, 3)),
]
STARTED: list[tuple[str, Any, Any]] = [
    ("r_V1", START_ROOM, "V1"),
    ("i_s3cr3t", START_INVITE, "s3cr3t"),
    ("p_D1-2026-000001", START_TOPIC, "D1-2026-000001"),
    ("m_a7k2mx9pqr", START_MEETING, "a7k2mx9pqr"),
    ("", START_PLAIN, ""),
    ("qrscene_x", START_PLAIN, "qrscene_x"),
]
FIXED = {
    "m:menu": Payload.MENU,
    "m:mine": Payload.MENU_MINE,
    "m:room": Payload.MENU_ROOM,
    "m:submit": Payload.MENU_SUBMIT,
    "m:member": Payload.MENU_MEMBER,
    "m:party": Payload.MENU_PARTY,
    "m:grid": Payload.MENU_GRID,
    "m:todo": Payload.MENU_TODO,
    "s:next": Payload.SUBMIT_NEXT,
    "s:skip": Payload.SUBMIT_SKIP,
    "s:confirm": Payload.SUBMIT_CONFIRM,
    "s:edit": Payload.SUBMIT_EDIT,
    "s:cosign": Payload.SUBMIT_COSIGN,
    "s:cancel": Payload.SUBMIT_CANCEL,
    "s:done": Payload.SUBMIT_DONE,
    "e:title": Payload.EDIT_TITLE,
    "e:description": Payload.EDIT_DESCRIPTION,
    "e:resident": Payload.EDIT_RESIDENT,
    "e:phone": Payload.EDIT_PHONE,
    "k:skip": Payload.REVIEW_SKIP,
    "k:done": Payload.REVIEW_DONE,
    "m:held": Payload.MENU_MODERATION,
    "m:poll": Payload.MENU_POLL,
    "q:done": Payload.POLL_DONE,
    "mj:name": Payload.JOIN_SAME_NAME,
    "mj:nozone": Payload.JOIN_NO_ZONE,
    "y:done": Payload.RESEARCH_DONE,
}


def test_every_kind_round_trips_and_old_payloads_still_parse() -> None:
    assert {p.value: p for p in Payload} == FIXED  # none added or renamed unnoticed
    for sent, kind in FIXED.items():
        assert BUTTONS.kind(sent) is kind and str(kind) == sent
    for registry, cases in ((BUTTONS, SENT), (STARTS, STARTED)):
        assert {id(k) for _, k, _ in cases} == {id(r) for r in registry.refs}  # all covered
        for sent, kind, value in cases:
            assert registry.kind(sent) is kind, sent
            assert kind.parse(sent) == value and kind.build(value) == sent
    for payload in [*FIXED, *(s for s, _, _ in SENT)]:
        assert len(payload.encode()) <= 64  # Telegram's callback_data


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ("t:abc", TOPIC),
        ("t:", TOPIC),
        ("t:1:2", TOPIC),
        ("o:²", CARD),
        ("m:todo:", TODO_PAGE),
        ("lk:12", LIKE),
        ("lk:12:2", LIKE),
        ("ft:x:1", FOLLOW_TOPIC),
        ("md:3:x", MODERATE),
        ("pv:3", POLL_VOTE),
    ],
)
def test_a_garbled_payload_is_of_its_kind_but_has_no_value(payload: str, kind: Ref[Any]) -> None:
    assert BUTTONS.kind(payload) is kind and kind.parse(payload) is None


def test_a_garbled_joint_answer_is_still_an_answer_to_refuse() -> None:
    assert JOINT.parse("cs:") == JointAnswer("", None)
    assert JOINT.parse("cs:token:maybe") == JointAnswer("token", None)
    assert BUTTONS.kind("zz:1") is None and BUTTONS.kind("") is None
    assert START_ROOM.parse("r_") is None  # no room: a plain start


def test_overlapping_kinds_are_refused() -> None:
    topic, under = Ref("topic", "t:", int), Ref("topic_extra", "t:x", str)
    with pytest.raises(ValueError, match="under topic"):
        Registry([], [topic, under])
    with pytest.raises(ValueError, match="two kinds"):
        Registry(Payload, [Ref("menu", "m:", str)])


def test_every_kind_is_handled_by_exactly_one_module() -> None:
    claims: list[object] = []
    for table in HANDLERS:
        claims += [r.kind for r in (*table.commands, *table.buttons, *table.starts)]
        claims += [k for flow in table.flows.values() for k in flow.answers]
    assert sorted(map(id, claims)) == sorted(map(id, BUTTONS.kinds + STARTS.kinds))


async def _nothing(conv: Conversation, value: object = None) -> None:
    conv.reply("")


async def _taken(conv: Conversation) -> bool:
    return True


@pytest.mark.parametrize(
    "extra",
    [
        Handlers("copy", buttons=[on(TOPIC, _nothing)]),
        Handlers("copy", commands=[on(Payload.MENU, _nothing)]),
        Handlers("copy", flows={"x": Flow(_nothing, answers=(Payload.SUBMIT_NEXT,))}),
        Handlers("copy", words={"待办": _nothing}),
        Handlers("copy", flows={"review": Flow(_nothing)}),
        Handlers("copy", starts=[on(START_INVITE, _nothing)]),
        Handlers("copy", fallback=_taken),
    ],
)
async def test_two_modules_claiming_the_same_thing_are_refused_at_start_up(
    services: Services, extra: Handlers
) -> None:
    d = services.dialogs
    Dialogs(d.sessions, d.lifecycle, d.clock, d.tell, handlers=HANDLERS)  # as built
    with pytest.raises(Conflict, match=r"claimed by both .* and copy"):
        Dialogs(d.sessions, d.lifecycle, d.clock, d.tell, handlers=(*HANDLERS, extra))


async def test_a_kind_outside_the_registry_is_refused_at_start_up(services: Services) -> None:
    d, stray = services.dialogs, Ref("stray", "x:", str)
    with pytest.raises(Conflict, match=r"stray, which is not in workflow/payloads\.py"):
        Dialogs(
            d.sessions,
            d.lifecycle,
            d.clock,
            d.tell,
            handlers=(*HANDLERS, Handlers("copy", buttons=[on(stray, _nothing)])),
        )


@pytest.mark.parametrize("payload", ["zz:1", "t:abc", "m:todo:x", "o:", "s:next", "v:1"])
async def test_a_payload_nobody_takes_is_a_stale_button_and_the_buttons_stay(
    world: World, services: Services, payload: str
) -> None:
    person = Reviewer(services.dialogs, "V1:resident")
    [welcome] = await person.scan("V1")
    assert welcome.buttons[0].payload == "m:submit"
    [stale] = await person.press(payload)
    assert (stale.text, stale.buttons) == ("这个按钮已失效，请按最新的消息操作。", ())
    assert texts(await person.type("1")).startswith("请用一句话写下议题标题")  # still offered


async def test_a_question_under_review_takes_other_buttons_as_answers_but_not_commands(
    world: World, services: Services
) -> None:
    """The order the old or-chain had: a review question asked is answered by a topic's,
    a room's or a joint answer's button (asked again), while words and commands work."""
    topic = await world.open("V1", title="路灯坏了")
    convener = Reviewer(services.dialogs, "V1:convener")
    await convener.scan("V1")
    await convener.type("待办")
    await convener.type("1")  # the card
    ask = "请选择「议题类别」："
    assert (await convener.type("受理"))[0].text == ask
    for pressed in (f"t:{topic.id}", "room:V1", "cs:token:y", "zz:1"):
        assert (await convener.press(pressed))[0].text == ask, pressed
    [todo] = await convener.press("m:todo")  # a command: the to-do list, question left
    assert "路灯坏了" in todo.buttons[0].label
    assert (await convener.type("我的议题"))[0].text.startswith("您还没有提交过议题")
