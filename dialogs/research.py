"""Research in the chat (商前调研), after the plan and the findings are recorded on the
review card: the convener or operator names who takes part (people of the topic's room,
picked with buttons, told through the outbox with a 确认参加 button) and uploads the
findings' photos and files (each stored as an attachment of the findings, downloaded by
bot/media.py). The same picking invites named people to the topic's meeting once it is
scheduled (their invitation's 报名参会 button registers them as the join link does,
dialogs/join_meeting.py). Every press is checked again (workflow/research.py)."""

from __future__ import annotations

from typing import Any

from dialogs.conversation import SAY, Conversation, say
from dialogs.handlers import Flow, Handlers, on
from dialogs.submit_fields import attach
from dialogs.types import Button
from storage.models import Topic
from workflow.errors import WorkflowError
from workflow.meetings import invite
from workflow.payloads import (
    FINDINGS_MEDIA,
    MEETING_INVITE,
    MEETING_JOIN,
    RESEARCH_CONFIRM,
    RESEARCH_NAME,
    RESEARCH_PICK,
    Pair,
    Payload,
)
from workflow.research import (
    MAX_FILES,
    attach_finding,
    candidates,
    check_organiser,
    confirm,
    findings_event,
    name_participants,
)
from workflow.texts import label
from workflow.when import say_when

NAMING, UPLOADING = "research", "findings"
SHOWN = 12


def _button(key: str, payload: str, **params: Any) -> Button:
    return Button(SAY.sections["buttons_research"][key].format(**params), payload)


def follow_ups(action: str, topic_id: int) -> list[Button]:
    """What the review card's step leads on to (dialogs/review.py offers these)."""
    if action == "plan_research":
        return [_button("name", RESEARCH_NAME.build(topic_id))]
    if action == "record_findings":
        return [_button("upload", FINDINGS_MEDIA.build(topic_id))]
    if action == "schedule_meeting":
        return [_button("invite", MEETING_INVITE.build(topic_id))]
    return []


async def _organised(conv: Conversation, topic_id: int, purpose: str = "research") -> Topic | None:
    topic = await conv.session.get(Topic, topic_id)
    try:
        if topic is None:
            raise WorkflowError(f"{purpose}_not_permitted")
        await check_organiser(conv.session, await conv.actor(), topic, purpose)
    except WorkflowError as refusal:
        conv.home()
        await conv.refuse(f"{purpose}.refused", refusal.message, topic_id=topic_id)
        return None
    return topic


async def start_naming(conv: Conversation, topic_id: int, purpose: str = "research") -> None:
    topic = await _organised(conv, topic_id, purpose)
    if topic is None:
        return
    conv.state.data = {
        **({"room": conv.data["room"]} if "room" in conv.data else {}),
        NAMING: {"topic": topic_id, "picked": [], "for": purpose},
    }
    conv.goto(NAMING, "pick")
    await _offer(conv, topic)


async def _offer(conv: Conversation, topic: Topic) -> None:
    assert topic.id is not None
    picked = conv.data[NAMING]["picked"]
    people = [c for c in await candidates(conv.session, topic) if c[0] != conv.person.id]
    if not people:
        conv.home()
        conv.reply(say("research", "nobody"))
        return
    purpose = conv.data[NAMING]["for"]
    conv.reply(
        say("research", f"pick_{purpose}", title=topic.title, count=len(picked)),
        *[
            _button(
                "on" if pid in picked else "off",
                RESEARCH_PICK.build(Pair(topic.id, pid)),
                name=name or str(pid),
                role=label("roles", role),
            )
            for pid, name, role in people[:SHOWN]
        ],
        _button("done", Payload.RESEARCH_DONE),
    )


async def _pick(conv: Conversation, chosen: Pair) -> None:
    naming = conv.data[NAMING]
    topic = await _organised(conv, chosen.first, naming["for"])
    if topic is None:
        return
    if naming["topic"] != chosen.first:  # a button of another topic's list
        await start_naming(conv, chosen.first, naming["for"])
        return
    known = {pid for pid, _, _ in await candidates(conv.session, topic)}
    if chosen.second in known:
        picked = naming["picked"]
        if chosen.second in picked:
            picked.remove(chosen.second)
        else:
            picked.append(chosen.second)
    await _offer(conv, topic)


async def step(conv: Conversation) -> None:
    """Naming: 完成 tells those picked. Uploading: each photo or file is kept; 完成 ends."""
    if conv.state.flow == UPLOADING:
        await _upload(conv)
        return
    naming = conv.data[NAMING]
    chosen = RESEARCH_PICK.parse(conv.inbound.payload) if conv.inbound.kind == "button" else None
    if chosen is not None:
        await _pick(conv, chosen)
        return
    if not (conv.inbound.kind == "button" and conv.inbound.payload == Payload.RESEARCH_DONE):
        topic = await conv.session.get(Topic, naming["topic"])
        assert topic is not None
        await _offer(conv, topic)
        return
    topic = await _organised(conv, naming["topic"], naming["for"])
    if topic is None:
        return
    roles = {pid: role for pid, _, role in await candidates(conv.session, topic)}
    named = [(pid, roles[pid]) for pid in naming["picked"] if pid in roles]
    if naming["for"] == "meeting":
        await _invite(conv, topic, [pid for pid, _ in named])
        return
    made = await name_participants(conv.session, topic, named, await conv.actor(), conv.now)
    plan = topic.facts.get("plan_research", {})
    for row in made:
        assert row.id is not None
        await conv.tell(
            row.person_id,
            f"research:{row.id}:named",
            say(
                "research",
                "named",
                title=topic.title,
                number=topic.number,
                role=label("roles", row.role),
                plan=plan.get("plan", ""),
                when=plan.get("research_when") or say("research", "unset"),
                where=plan.get("research_place") or say("research", "unset"),
            ),
            kind="research.named",
            buttons=[(SAY.sections["buttons_research"]["confirm"], RESEARCH_CONFIRM.build(row.id))],
            topic_id=topic.id,
        )
    conv.home()
    conv.reply(say("research", "told", count=len(made), again=len(named) - len(made)))


async def _invite(conv: Conversation, topic: Topic, named: list[int]) -> None:
    try:
        meeting, made = await invite(conv.session, topic, named, await conv.actor(), conv.now)
    except WorkflowError as refusal:
        conv.home()
        conv.reply(refusal.message)
        return
    for row in made:
        await conv.tell(
            row.person_id,
            f"meeting:{meeting.id}:invited:{row.person_id}",
            say(
                "research",
                "invited",
                title=topic.title,
                number=topic.number,
                when=say_when(meeting.starts_at, now=conv.now),
                place=meeting.place,
                agenda=meeting.agenda or say("join", "none"),
            ),
            kind="meeting.invited",
            buttons=[(SAY.sections["buttons_research"]["join"], MEETING_JOIN.build(meeting.code))],
            topic_id=topic.id,
        )
    conv.home()
    conv.reply(say("research", "invites_sent", count=len(made), again=len(named) - len(made)))


async def confirmed(conv: Conversation, participant_id: int) -> None:
    assert conv.person.id is not None
    row = await confirm(conv.session, participant_id, conv.person.id, conv.now)
    if row is None:
        await conv.refuse(
            "research.confirm_refused", say("research", "not_yours"), participant=participant_id
        )
        return
    topic = await conv.session.get(Topic, row.topic_id)
    assert topic is not None
    conv.reply(say("research", "confirmed", title=topic.title))
    if row.named_by_id is not None and row.confirmed_at == conv.now:
        await conv.tell(
            row.named_by_id,
            f"research:{row.id}:confirmed",
            say("research", "confirmed_told", name=conv.person.display_name, title=topic.title),
            kind="research.confirmed",
            topic_id=topic.id,
        )


async def invite_to_meeting(conv: Conversation, topic_id: int) -> None:
    await start_naming(conv, topic_id, "meeting")


async def start_upload(conv: Conversation, topic_id: int) -> None:
    topic = await _organised(conv, topic_id)
    if topic is None:
        return
    conv.state.data = {
        **({"room": conv.data["room"]} if "room" in conv.data else {}),
        UPLOADING: {"topic": topic_id, "count": 0},
    }
    conv.goto(UPLOADING, "files")
    conv.reply(say("research", "upload", limit=MAX_FILES), _button("done", Payload.RESEARCH_DONE))


async def _upload(conv: Conversation) -> None:
    uploading, inbound = conv.data[UPLOADING], conv.inbound
    if inbound.kind == "button" and inbound.payload == Payload.RESEARCH_DONE:
        conv.home()
        conv.reply(say("research", "uploaded", count=uploading["count"]))
        return
    if inbound.kind not in ("image", "voice", "file") or inbound.media is None:
        conv.reply(say("research", "upload_what"), _button("done", Payload.RESEARCH_DONE))
        return
    topic = await _organised(conv, uploading["topic"])
    if topic is None:
        return
    if inbound.media.size > conv.max_upload_bytes:
        conv.reply(
            say(
                "research",
                "too_large",
                size=f"{inbound.media.size / 1024 / 1024:.1f}",
                limit=f"{conv.max_upload_bytes / 1024 / 1024:.0f}",
            ),
            _button("done", Payload.RESEARCH_DONE),
        )
        return
    if uploading["count"] >= MAX_FILES:
        conv.reply(
            say("research", "too_many", limit=MAX_FILES), _button("done", Payload.RESEARCH_DONE)
        )
        return
    try:
        event_id = await findings_event(conv.session, topic)
    except WorkflowError as refusal:
        conv.home()
        conv.reply(refusal.message)
        return
    uploading["count"] = await attach_finding(
        conv.session, topic, event_id, await attach(conv, inbound.kind)
    )
    conv.reply(
        say("research", "received", count=uploading["count"]),
        _button("done", Payload.RESEARCH_DONE),
    )


HANDLERS = Handlers(
    "research",
    commands=[
        on(RESEARCH_NAME, start_naming),
        on(MEETING_INVITE, invite_to_meeting),
        on(FINDINGS_MEDIA, start_upload),
    ],
    buttons=[on(RESEARCH_CONFIRM, confirmed)],
    flows={
        NAMING: Flow(step, modal=True, answers=(RESEARCH_PICK, Payload.RESEARCH_DONE)),
        UPLOADING: Flow(step, files=True),
    },
)
