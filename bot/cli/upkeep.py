"""``mashangyi db upgrade`` and ``mashangyi calendar status``: the schema and the holiday data."""

from __future__ import annotations

import argparse

from bot.config import Config
from bot.services import build_services
from storage import migrate


async def cmd_db_upgrade(config: Config, args: argparse.Namespace) -> int:
    await migrate.upgrade(config.database_url)
    revision = await migrate.current_revision(config.database_url)
    print(f"database is at revision {revision}")
    return 0


async def cmd_calendar_status(config: Config, args: argparse.Namespace) -> int:
    services = build_services(config, args.clock)
    try:
        warning = services.calendar_warning()
    finally:
        await services.close()
    print(warning or "holiday data covers the next 90 days")
    return 1 if warning else 0
