"""``mashangyi topics list|show``, ``mashangyi overdue`` and ``mashangyi notice``: the topics as
operators read them (and print them).
The queries are workflow/queries.py's; this module turns their rows into lines or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.cli.common import CliError, due, when, with_services
from bot.config import Config
from bot.notice_files import FontError, NoNotice, NoticeFiles
from bot.services import Services
from storage.models import Room, Topic
from workflow.lifecycle import State
from workflow.queries import overdue_report, topic_page, topic_record
from workflow.rooms import get_room
from workflow.texts import label

LIST_LIMIT = 100  # topics a `topics list` shows unless told otherwise


def _topic_summary(topic: Topic, rooms: dict[int | None, Room]) -> dict[str, Any]:
    return {
        "number": topic.number,
        "room": rooms[topic.room_id].code,
        "room_name": rooms[topic.room_id].name,
        "source": topic.source,
        "title": topic.title,
        "category": topic.category,
        "state": topic.state,
        "state_label": label("states", topic.state),
        "step_started_at": topic.step_started_at.isoformat(),
        "review_due_at": topic.review_due_at.isoformat() if topic.review_due_at else None,
        "due": due(topic.review_due_at) if topic.review_due_at else None,
        "created_at": topic.created_at.isoformat(),
    }


def _state(given: str) -> State:
    """A state as ``topics list`` shows it (待初审) or by its key (submitted)."""
    shown = {label("states", state): state for state in State}
    if given in shown:
        return shown[given]
    if given in set(State):
        return State(given)
    raise CliError(f"unknown state {given!r}; valid states: {', '.join(shown)}")


async def _room_id(session: AsyncSession, code: str | None) -> int | None:
    """The id of room ``code``; None when no room is given."""
    if not code:
        return None
    room = await get_room(session, code)
    if room is None:
        raise CliError(f"no room with code {code!r}")
    return room.id


async def cmd_topics_list(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessions() as session:
            if args.limit < 1 or args.offset < 0:
                raise CliError("--limit must be at least 1 and --offset at least 0")
            room_id = await _room_id(session, args.room)
            state = _state(args.state) if args.state else None
            page = await topic_page(
                session, room_id=room_id, state=state, offset=args.offset, limit=args.limit
            )
        topics, total, rooms = page.topics, page.total, page.rooms
        rows = [_topic_summary(t, rooms) for t in topics]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return 0
        for t, row in zip(topics, rows, strict=True):
            print(
                f"{row['number']}  {row['room']:<10} {row['state_label']:<14} "
                f"due {due(t.review_due_at):<10}  {row['title']}"
            )
        after = args.offset + len(rows)
        if len(rows) == total:
            print(f"{total} topics")
        elif after < total:
            print(f"{len(rows)} of {total} topics; the next with --offset {after}")
        else:
            print(f"{len(rows)} of {total} topics")
        return 0

    return await with_services(config, args, work)


async def cmd_topics_show(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessions() as session:
            record = await topic_record(session, args.number)
        if record is None:
            raise CliError(f"no topic numbered {args.number!r}")
        topic, events, outbox = record.topic, record.events, record.outbox
        rooms, people = record.rooms, record.people

        def who(person_id: int | None) -> str:
            person = people.get(person_id)
            return person.display_name or f"#{person_id}" if person else "系统"

        history = [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "actor": who(e.actor_id),
                "actor_role": e.actor_role,
                "action": e.action,
                "from_state": e.from_state,
                "to_state": e.to_state,
                "from_room": rooms[e.from_room_id].code if e.from_room_id else None,
                "room": rooms[e.room_id].code,
                "fields": e.fields,
            }
            for e in events
        ]
        deliveries = [
            {
                "kind": m.kind,
                "channel": m.channel,
                "to": who(m.person_id),
                "status": m.status,
                "attempts": m.attempts,
                "last_error": m.last_error,
                "sent_at": m.sent_at.isoformat() if m.sent_at else None,
            }
            for m in outbox
        ]
        satisfaction = [
            {
                "implemented_at": r.round.isoformat(),
                "submitter": r.submitter,
                "submitter_reason": r.submitter_reason,
                "public": dict(r.public),
                "answers": [
                    {
                        "who": who(a.person_id),
                        "as": a.answerer,
                        "answer": a.answer,
                        "reason": a.reason,
                        "at": a.at.isoformat(),
                    }
                    for a in r.answers
                ],
            }
            for r in record.satisfaction
        ]
        summary = _topic_summary(topic, rooms)
        summary |= {
            "background": topic.background,
            "submitter": who(topic.submitter_id),
            "facts": topic.facts,
        }
        if args.json:
            print(
                json.dumps(
                    {
                        **summary,
                        "history": history,
                        "deliveries": deliveries,
                        "satisfaction": satisfaction,
                    },
                    ensure_ascii=False,
                    indent=2,
                )
            )
            return 0
        print(f"{topic.number}  {topic.title}")
        print(f"  room:      {summary['room']} {summary['room_name']}")
        print(f"  state:     {summary['state_label']} ({topic.state})")
        print(f"  source:    {label('sources', topic.source)}   category: {topic.category or '-'}")
        print(f"  submitter: {summary['submitter']}")
        print(f"  step since {when(topic.step_started_at)}, review due {due(topic.review_due_at)}")
        if topic.background:
            print(f"  background: {topic.background}")
        print("history:")
        for e, h in zip(events, history, strict=True):
            moved = f" [{h['from_room']} → {h['room']}]" if h["from_room"] else ""
            print(
                f"  {e.seq:>2}. {when(e.at)}  {h['actor']} ({label('roles', e.actor_role)})  "
                f"{label('actions', e.action)}: {label('states', e.from_state or '-')} → "
                f"{label('states', e.to_state)}{moved}"
            )
            for name, value in e.fields.items():
                print(f"        {label('fields', name)}: {value}")
        if satisfaction:
            print("satisfaction (问题解决了吗？):")
        for r in record.satisfaction:
            public = "，".join(
                f"{label('satisfaction', a)} {n}" for a, n in sorted(r.public.items())
            )
            given = label("satisfaction", r.submitter) if r.submitter else "-"
            print(f"  implemented {when(r.round)}: submitter {given}; public {public or '-'}")
            for a in r.answers:
                reason = f": {a.reason}" if a.reason else ""
                shown = label("satisfaction", a.answer)
                print(f"    {who(a.person_id)} ({a.answerer}) {shown}{reason}")
        print("deliveries:")
        for d in deliveries:
            error = f"  ({d['last_error']})" if d["last_error"] else ""
            print(
                f"  {d['kind']} → {d['to']} via {d['channel']}: {d['status']}"
                f" after {d['attempts']} attempts{error}"
            )
        if not deliveries:
            print("  (none)")
        return 0

    return await with_services(config, args, work)


async def cmd_overdue(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessions() as session:
            under = await _room_id(session, args.under)
            report = await overdue_report(
                session,
                services.clock.now(),
                services.calendar,
                escalate_after_days=config.reminders.escalate_after_days,
                under=under,
            )
        items, people = report.items, report.people

        def name(person_id: int) -> str:
            person = people.get(person_id)
            return (person.display_name if person else "") or f"#{person_id}"

        rows: list[dict[str, Any]] = [
            {
                "number": i.step.number,
                "title": i.step.title,
                "room": i.room.code,
                "room_name": i.room.name,
                "state": i.step.state,
                "state_label": label("states", i.step.state),
                "waited_workdays": i.waited,
                "overdue_workdays": i.overdue,
                "due": i.due_on.isoformat(),
                "expected_by": i.expected_by.isoformat(),
                "escalated": i.escalated,
                "responsible": [
                    {"name": name(pid), "role": role, "role_label": label("roles", role)}
                    for pid, role in i.responsible
                ],
                "supervising_room": i.supervising_room.code if i.supervising_room else None,
            }
            for i in items
        ]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return 0
        for row in rows:
            who = ", ".join(f"{r['role_label']} {r['name']}" for r in row["responsible"])
            escalated = f"  escalated to {row['supervising_room']}" if row["escalated"] else ""
            print(
                f"{row['number']}  {row['room']} {row['room_name']}  {row['state_label']}  "
                f"waited {row['waited_workdays']} working days, due {row['due']} "
                f"({row['overdue_workdays']} over){escalated}"
            )
            print(f"    responsible: {who or '(nobody holds the role)'}")
        print(f"{len(rows)} overdue")
        return 0

    return await with_services(config, args, work)


async def cmd_notice(config: Config, args: argparse.Namespace) -> int:
    """``notice NUMBER --out DIR``: the printable 公示 notice, PNG and PDF."""

    async def work(services: Services) -> int:
        try:
            files = await services.notices.files(args.number, args.kind)
        except NoNotice:
            raise CliError(
                f"topic {args.number!r} has no {args.kind or 'public'} notice: it is unknown, "
                "not publicized yet, or its results are not published"
            ) from None
        except FontError as exc:
            raise CliError(str(exc)) from None
        for path in _write_notice(args.out, files):
            print(path)
        return 0

    return await with_services(config, args, work)


def _write_notice(out: Path, files: NoticeFiles) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, data in (("png", files.png), ("pdf", files.pdf)):
        path = out / f"{files.notice.filename}.{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths
