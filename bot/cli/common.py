"""What every command module of the command line shares: the one-line error, the services a
command runs with, and how times and due days are shown."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.config import Config
from bot.services import Services, build_services
from workflow.clock import CHINA, last_day

Command = Callable[[Config, argparse.Namespace], Awaitable[int]]


class CliError(Exception):
    """A problem to report in one line, with exit status 1."""


def when(moment: datetime | None) -> str:
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if moment else "-"


def due(due_at: datetime | None) -> str:
    """A review window is shown by its last day (it ends at 00:00 the day after)."""
    return last_day(due_at).isoformat() if due_at else "-"


async def with_services(
    config: Config, args: argparse.Namespace, work: Callable[[Services], Awaitable[int]]
) -> int:
    """``work`` on the services of ``args.clock`` (None: the system clock), closed after."""
    services = build_services(config, args.clock)
    try:
        return await work(services)
    finally:
        await services.close()
