"""``mashangyi``: the command line for operators.

One parser names every command (``build_parser``); the commands live by group in this
package (rooms.py, roles.py, topics.py, processes.py, upkeep.py; ``telegram …`` in
bot/telegram/commands.py), parsing arguments and formatting what workflow/ returns: the
reads behind them are in workflow/queries.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.cli.common import CliError, Command
from bot.cli.doctor import cmd_doctor
from bot.cli.processes import cmd_chat, cmd_demo, cmd_serve, cmd_worker
from bot.cli.research import cmd_research_plan, cmd_research_show
from bot.cli.roles import cmd_invite, cmd_invite_revoke, cmd_roles_list, cmd_roles_revoke
from bot.cli.rooms import cmd_qr, cmd_rooms_import, cmd_rooms_list
from bot.cli.topics import LIST_LIMIT, cmd_notice, cmd_overdue, cmd_topics_list, cmd_topics_show
from bot.cli.upkeep import cmd_calendar_import, cmd_calendar_status, cmd_db_upgrade
from bot.config import CONFIG_ENV, ConfigError, load_config
from bot.logs import configure as configure_logging
from bot.telegram.commands import run_command as cmd_telegram
from workflow.clock import Clock
from workflow.invites import INVITE_ROLES

__all__ = ["CliError", "build_parser", "main", "parse_args", "run"]


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

    research = sub.add_parser("research", help="research before consultation").add_subparsers(
        dest="research", required=True
    )
    plan = add(research, "plan", cmd_research_plan, "publish a topic's research plan")
    plan.add_argument("number", help="topic number, e.g. DH-2026-000001")
    plan.add_argument("--plan", required=True, help="what is researched and with whom")
    plan.add_argument("--when", help="when (as written, e.g. 3月5日上午)")
    plan.add_argument("--where", help="where")
    plan.add_argument(
        "--by", required=True, type=int, help="the convener's or operator's person id"
    )
    shown = add(research, "show", cmd_research_show, "a topic's research so far")
    shown.add_argument("number", help="topic number, e.g. DH-2026-000001")
    shown.add_argument("--json", action="store_true")

    notice = add(sub, "notice", cmd_notice, "a publicized topic's printable notice (PNG, PDF)")
    notice.add_argument("number", help="topic number, e.g. DH-2026-000001")
    notice.add_argument(
        "--kind", choices=("topic", "results"), help="default: the results once published"
    )
    notice.add_argument("--out", required=True, type=Path, metavar="DIR", help="files go here")

    calendar = sub.add_parser("calendar", help="working-day calendar").add_subparsers(
        dest="calendar", required=True
    )
    add(calendar, "status", cmd_calendar_status, "where each year's working days come from")
    notice_import = add(
        calendar, "import", cmd_calendar_import, "a year's holiday table from the State notice"
    )
    notice_import.add_argument("file", help="the notice's text (UTF-8), as published")
    notice_import.add_argument("--year", type=int, help="when the text lacks the notice's title")
    notice_import.add_argument(
        "--out", type=Path, help="file or folder (default: calendar.table_dir)"
    )
    notice_import.add_argument("--force", action="store_true", help="replace an existing table")
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
    serve.add_argument(
        "--no-background",
        action="store_true",
        help="answer requests only; `mashangyi worker` runs the outbox and the sweeps",
    )
    add(sub, "worker", cmd_worker, "run the reminder sweeps, the outbox and media downloads")
    add(sub, "doctor", cmd_doctor, "check a deployment and say what is wrong (exit 1 if so)")
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
    args = parse_args(argv, clock)
    try:
        config = load_config(args.config)
        configure_logging(config.server.log_format)
        # fontTools logs every table it prunes at INFO, tens of lines per printable notice.
        logging.getLogger("fontTools").setLevel(logging.WARNING)
        return asyncio.run(args.handler(config, args))
    except (ConfigError, CliError) as exc:
        print(f"mashangyi: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
