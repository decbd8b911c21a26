"""``mashangyi``: the command line for operators.

Over 400 lines, for now: every command's parsing and formatting, next to the one parser that
names them; the queries behind them are in workflow/queries.py. Splitting this by command
group into bot/cli/ (ARCHITECTURE.md) waits for the concurrent change to ``main`` (an
injected clock) to land, so that neither has to be redone by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.config import CONFIG_ENV, Config, ConfigError, load_config
from bot.services import Services, build_services
from bot.telegram.commands import run_command as cmd_telegram
from storage import migrate
from storage.db import transaction
from storage.models import Person, Room, Topic
from workflow.clock import CHINA, Clock, last_day
from workflow.invites import INVITE_ROLES
from workflow.lifecycle import State
from workflow.queries import all_rooms, names, topic_page, topic_record
from workflow.rooms import RoomImportError, get_room, import_rooms, parse_rooms_csv
from workflow.texts import label

log = logging.getLogger("mashangyi")
Command = Callable[[Config, argparse.Namespace], Awaitable[int]]


class CliError(Exception):
    """A problem to report in one line, with exit status 1."""


def _when(moment: datetime | None) -> str:
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _due(due_at: datetime | None) -> str:
    """A review window is shown by its last day (it ends at 00:00 the day after)."""
    return last_day(due_at).isoformat() if due_at else "-"


async def _with_services(
    config: Config, args: argparse.Namespace, work: Callable[[Services], Awaitable[int]]
) -> int:
    services = build_services(config, args.clock)
    try:
        return await work(services)
    finally:
        await services.close()


# -- db ----------------------------------------------------------------------------------


async def cmd_db_upgrade(config: Config, args: argparse.Namespace) -> int:
    await migrate.upgrade(config.database_url)
    revision = await migrate.current_revision(config.database_url)
    print(f"database is at revision {revision}")
    return 0


# -- rooms -------------------------------------------------------------------------------


async def cmd_rooms_import(config: Config, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        rows = parse_rooms_csv(path.read_bytes())  # noqa: ASYNC240 (a one-off CLI read)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except RoomImportError as exc:
        raise CliError(f"{path}: {exc}") from None

    async def work(services: Services) -> int:
        try:
            async with transaction(services.sessions) as session:
                result = await import_rooms(session, rows, services.clock.now())
        except RoomImportError as exc:
            raise CliError(f"{path}: {exc}; nothing was imported") from None
        print(
            f"{path}: {result.created} created, {result.updated} updated, "
            f"{result.unchanged} unchanged"
        )
        return 0

    return await _with_services(config, args, work)


async def cmd_rooms_list(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessions() as session:
            rooms = await all_rooms(session)
        by_id = {room.id: room for room in rooms}
        children: dict[int | None, list[Room]] = {}
        for room in rooms:
            parent = room.parent_id if room.parent_id in by_id else None
            children.setdefault(parent, []).append(room)

        def show(parent: int | None, depth: int) -> None:
            for room in children.get(parent, []):
                print(f"{'  ' * depth}{room.code}  {room.name}  [{room.level}]")
                show(room.id, depth + 1)

        show(None, 0)
        print(f"{len(rooms)} rooms")
        return 0

    return await _with_services(config, args, work)


async def cmd_qr(config: Config, args: argparse.Namespace) -> int:
    from bot.qr import QRError, make_posters

    async def work(services: Services) -> int:
        try:
            await make_posters(
                services, args.all_under or args.room, subtree=bool(args.all_under), out=args.out
            )
        except QRError as exc:
            raise CliError(str(exc)) from None
        return 0

    return await _with_services(config, args, work)


# -- invites and roles --------------------------------------------------------------------


async def _roles_command(
    config: Config, args: argparse.Namespace, work: Callable[[Services], Awaitable[object]]
) -> int:
    from bot.invites import CommandError

    async def guarded(services: Services) -> int:
        try:
            await work(services)
        except CommandError as exc:
            raise CliError(str(exc)) from None
        return 0

    return await _with_services(config, args, guarded)


async def cmd_invite(config: Config, args: argparse.Namespace) -> int:
    from bot.invites import CommandError, make_invite, parse_validity

    if not args.room or not args.role:
        raise CliError("invite needs --room CODE and --role ROLE (or: invite revoke ID)")
    try:
        validity = parse_validity(args.expires)
    except CommandError as exc:
        raise CliError(str(exc)) from None
    return await _roles_command(
        config, args, lambda s: make_invite(s, args.room, args.role, validity, args.out)
    )


async def cmd_invite_revoke(config: Config, args: argparse.Namespace) -> int:
    from bot.invites import withdraw_invite

    return await _roles_command(config, args, lambda s: withdraw_invite(s, args.id, print))


async def cmd_roles_list(config: Config, args: argparse.Namespace) -> int:
    from bot.invites import list_roles

    return await _roles_command(config, args, lambda s: list_roles(s, args.room, args.json, print))


async def cmd_roles_revoke(config: Config, args: argparse.Namespace) -> int:
    from bot.invites import take_back_role

    return await _roles_command(config, args, lambda s: take_back_role(s, args.grant_id, print))


# -- topics ------------------------------------------------------------------------------


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
        "due": _due(topic.review_due_at) if topic.review_due_at else None,
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


async def cmd_topics_list(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessions() as session:
            if args.limit < 1 or args.offset < 0:
                raise CliError("--limit must be at least 1 and --offset at least 0")
            room_id = None
            if args.room:
                room = await get_room(session, args.room)
                if room is None:
                    raise CliError(f"no room with code {args.room!r}")
                room_id = room.id
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
                f"due {_due(t.review_due_at):<10}  {row['title']}"
            )
        after = args.offset + len(rows)
        if len(rows) == total:
            print(f"{total} topics")
        elif after < total:
            print(f"{len(rows)} of {total} topics; the next with --offset {after}")
        else:
            print(f"{len(rows)} of {total} topics")
        return 0

    return await _with_services(config, args, work)


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
        summary = _topic_summary(topic, rooms)
        summary |= {
            "background": topic.background,
            "submitter": who(topic.submitter_id),
            "facts": topic.facts,
        }
        if args.json:
            print(
                json.dumps(
                    {**summary, "history": history, "deliveries": deliveries},
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
        print(
            f"  step since {_when(topic.step_started_at)}, review due {_due(topic.review_due_at)}"
        )
        if topic.background:
            print(f"  background: {topic.background}")
        print("history:")
        for e, h in zip(events, history, strict=True):
            moved = f" [{h['from_room']} → {h['room']}]" if h["from_room"] else ""
            print(
                f"  {e.seq:>2}. {_when(e.at)}  {h['actor']} ({label('roles', e.actor_role)})  "
                f"{label('actions', e.action)}: {label('states', e.from_state or '-')} → "
                f"{label('states', e.to_state)}{moved}"
            )
            for name, value in e.fields.items():
                print(f"        {label('fields', name)}: {value}")
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

    return await _with_services(config, args, work)


# -- overdue -----------------------------------------------------------------------------


async def cmd_overdue(config: Config, args: argparse.Namespace) -> int:
    from workflow.overdue import list_overdue

    async def work(services: Services) -> int:
        async with services.sessions() as session:
            under = None
            if args.under:
                room = await get_room(session, args.under)
                if room is None:
                    raise CliError(f"no room with code {args.under!r}")
                under = room.id
            items = await list_overdue(
                session,
                services.clock.now(),
                services.calendar,
                escalate_after_days=config.reminders.escalate_after_days,
                under=under,
            )
            people = await names(session, Person, (pid for i in items for pid, _ in i.responsible))

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

    return await _with_services(config, args, work)


# -- calendar, demo, serve, worker --------------------------------------------------------


async def cmd_calendar_status(config: Config, args: argparse.Namespace) -> int:
    services = build_services(config, args.clock)
    try:
        warning = services.calendar_warning()
    finally:
        await services.close()
    print(warning or "holiday data covers the next 90 days")
    return 1 if warning else 0


async def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    from bot.demo import load_demo

    await migrate.upgrade(config.database_url)
    return await _with_services(config, args, load_demo)


async def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from bot.serve import serve, serve_many

    server = config.server
    host, port = args.host or server.host, args.port or server.port
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.workers > 1:
        return await serve_many(config, host, port, args.workers)
    await serve(config, host, port, clock=args.clock)
    return 0


async def cmd_worker(config: Config, args: argparse.Namespace) -> int:
    from bot.serve import stop_event
    from bot.worker import run_worker

    services = build_services(config, args.clock)
    warning = services.calendar_warning()
    if warning:
        log.warning("%s", warning)
    stop = stop_event(signal.SIGINT, signal.SIGTERM)
    await services.take_worker_id("worker")
    print(
        "mashangyi worker: reminder sweeps every "
        f"{config.reminders.sweep_minutes:g} min, outbox delivery, media downloads "
        "(Ctrl+C stops)",
        flush=True,
    )
    try:
        await run_worker(services, stop)
    finally:
        await services.close()
    return 0


async def cmd_chat(config: Config, args: argparse.Namespace) -> int:
    from bot.console import chat

    async def work(services: Services) -> int:
        async with services.sessions() as session:
            if await get_room(session, args.room) is None:
                raise CliError(f"no room with code {args.room!r} (see `mashangyi rooms list`)")
        await services.take_worker_id("chat")
        return await chat(services, args.room, args.name)

    return await _with_services(config, args, work)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mashangyi", description="码上议 consultation-room bot")
    parser.add_argument("--config", help=f"TOML config file (default: ${CONFIG_ENV})")
    parser.set_defaults(clock=None)  # the system clock (``parse_args`` gives another)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(parent: Any, name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        command = parent.add_parser(name, help=help_text)
        command.set_defaults(handler=handler)
        return command

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    add(db, "upgrade", cmd_db_upgrade, "apply all migrations")

    rooms = sub.add_parser("rooms", help="consultation rooms").add_subparsers(
        dest="rooms", required=True
    )
    add(rooms, "import", cmd_rooms_import, "create/update rooms from a CSV file").add_argument(
        "file", help="CSV with header code,name,level,parent_code (UTF-8)"
    )
    add(rooms, "list", cmd_rooms_list, "the room tree")
    qr = add(sub, "qr", cmd_qr, "a room's WeChat/Telegram codes and printable posters")
    which = qr.add_mutually_exclusive_group(required=True)
    which.add_argument("--room", metavar="CODE", help="this room only")
    which.add_argument("--all-under", metavar="CODE", help="this room and every room below it")
    qr.add_argument("--out", required=True, type=Path, metavar="DIR", help="PNGs, PDF, CSV go here")

    invite = add(sub, "invite", cmd_invite, "a one-time invite to take a role in a room")
    invite.add_argument("--room", metavar="CODE", help="the room the role is held in")
    invite.add_argument("--role", choices=INVITE_ROLES)
    invite.add_argument("--expires", default="72h", help="e.g. 30m, 72h, 7d (at most 30d)")
    invite.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="for the PNGs")
    invite_sub = invite.add_subparsers(dest="invite", metavar="revoke ID")
    add(invite_sub, "revoke", cmd_invite_revoke, "withdraw an unused invite").add_argument(
        "id", type=int
    )
    roles = sub.add_parser("roles", help="role grants").add_subparsers(dest="roles", required=True)
    roles_list = add(roles, "list", cmd_roles_list, "roles in force, with who holds them")
    roles_list.add_argument("--room", metavar="CODE", help="only this room's")
    roles_list.add_argument("--json", action="store_true")
    add(roles, "revoke", cmd_roles_revoke, "take a role back (audited)").add_argument(
        "grant_id", type=int, metavar="GRANT_ID"
    )

    topics = sub.add_parser("topics", help="topics").add_subparsers(dest="topics", required=True)
    listing = add(topics, "list", cmd_topics_list, "list topics")
    listing.add_argument("--room", help="only this room's topics (room code)")
    listing.add_argument(
        "--state", help="only topics in this state, as the list shows it (e.g. 待初审)"
    )
    listing.add_argument("--json", action="store_true")
    listing.add_argument(
        "--limit", type=int, default=LIST_LIMIT, help=f"at most this many (default {LIST_LIMIT})"
    )
    listing.add_argument("--offset", type=int, default=0, help="skip this many first")
    show = add(topics, "show", cmd_topics_show, "a topic with its whole history")
    show.add_argument("number", help="topic number, e.g. DH-2026-000001")
    show.add_argument("--json", action="store_true")

    calendar = sub.add_parser("calendar", help="working-day calendar").add_subparsers(
        dest="calendar", required=True
    )
    add(calendar, "status", cmd_calendar_status, "warn when holiday data runs out soon")
    add(sub, "demo", cmd_demo, "migrate and load the demo city (safe to run twice)")
    chat = add(sub, "chat", cmd_chat, "talk to the bot in this terminal (console channel)")
    chat.add_argument("--room", required=True, help="as if you had scanned this room's code")
    chat.add_argument("--name", default="console", help="who you are (default: console)")
    tg = sub.add_parser("telegram", help="Telegram bot").add_subparsers(
        dest="telegram", required=True
    )
    add(tg, "set-webhook", cmd_telegram, "point Telegram at <public_base_url>/telegram")
    poll = add(tg, "poll", cmd_telegram, "serve by long polling (trial without a public URL)")
    poll.add_argument("--replace-webhook", action="store_true", help="delete the webhook first")
    serve = add(sub, "serve", cmd_serve, "run the web service, the outbox and the reminder sweeps")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port (PostgreSQL only)"
    )
    add(sub, "worker", cmd_worker, "run the reminder sweeps, the outbox and media downloads")
    overdue = add(sub, "overdue", cmd_overdue, "review steps past their five working days")
    overdue.add_argument("--under", help="only rooms under this one (e.g. a district's code)")
    overdue.add_argument("--json", action="store_true")
    return parser


def parse_args(argv: Sequence[str] | None, clock: Clock | None = None) -> argparse.Namespace:
    """The command line as the handlers take it: ``clock`` (None: the system clock) is the
    one the command's services run on."""
    return build_parser().parse_args(argv, namespace=argparse.Namespace(clock=clock))


async def run(
    argv: Sequence[str], *, clock: Clock | None = None, env: Mapping[str, str] | None = None
) -> int:
    """Run one command in the running event loop (``main`` starts its own); errors are
    raised, not printed. ``env`` stands in for the environment when reading the config."""
    args = parse_args(argv, clock)
    return int(await args.handler(load_config(args.config, env), args))


def main(argv: Sequence[str] | None = None, *, clock: Clock | None = None) -> int:
    """The ``mashangyi`` command. ``clock`` stands in for the system clock in the commands
    that run in this process (not in ``serve --workers N``'s processes, nor yet in
    ``telegram …``, which builds its own services)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv, clock)
    try:
        config = load_config(args.config)
        return asyncio.run(args.handler(config, args))
    except (ConfigError, CliError) as exc:
        print(f"mashangyi: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
