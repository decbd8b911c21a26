"""The long-running commands: ``mashangyi serve``, ``worker`` and ``chat``, and ``demo``,
which loads the demo city they are tried with."""

from __future__ import annotations

import argparse
import logging
import signal

from bot.cli.common import CliError, with_services
from bot.config import Config
from bot.services import Services, build_services
from storage import migrate
from workflow.rooms import get_room

log = logging.getLogger("mashangyi")


async def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    from bot.demo import load_demo

    await migrate.upgrade(config.database_url)
    return await with_services(config, args, load_demo)


async def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from bot.serve import serve, serve_many

    server = config.server
    host, port = args.host or server.host, args.port or server.port
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    background = not args.no_background
    if args.workers > 1:
        return await serve_many(config, host, port, args.workers, background=background)
    await serve(config, host, port, background=background, clock=args.clock)
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

    return await with_services(config, args, work)
