"""``mashangyi db upgrade`` and ``mashangyi calendar status|import``: the schema and the
holiday data."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli.common import CliError
from bot.config import Config
from bot.services import build_services
from storage import migrate
from workflow.clock import CHINA
from workflow.holiday_notice import NoticeError, parse_notice, summary
from workflow.texts import text
from workflow.workdays import PROVISIONAL, CalendarDataError, Source, load_year_table

#: How ``calendar status`` names where a year's answers come from.
SOURCES: dict[Source, str] = {
    "local": "local extra days from config",
    "table": "holiday table",
    "package": "chinese-calendar package",
    "statutory": (
        "PROVISIONAL: statutory holidays computed from the law, without the make-up working "
        "days (调休) that only the State Council's notice sets"
    ),
    "fallback": "Monday-Friday only (no holiday data at all)",
}


async def cmd_db_upgrade(config: Config, args: argparse.Namespace) -> int:
    await migrate.upgrade(config.database_url)
    revision = await migrate.current_revision(config.database_url)
    print(f"database is at revision {revision}")
    return 0


async def cmd_calendar_status(config: Config, args: argparse.Namespace) -> int:
    services = build_services(config, args.clock)
    try:
        warning = services.calendar_warning()
        coverage = services.calendar.coverage(services.clock.now().astimezone(CHINA).date())
    finally:
        await services.close()
    for year, sources in sorted(coverage.items()):
        listed = sorted(sources, key=lambda s: (s in PROVISIONAL, s))
        print(f"{year}: " + "; ".join(SOURCES[s] for s in listed))
    print(warning or "holiday data covers the next 90 days")
    return 1 if warning else 0


async def cmd_calendar_import(config: Config, args: argparse.Namespace) -> int:
    """Read the State Council's notice, show what was read, write the year's table."""
    path = Path(args.file)
    try:
        raw = path.read_bytes()  # noqa: ASYNC240 (a one-off CLI read)
    except OSError as exc:
        raise CliError(
            text("holiday_notice", "cannot_read", path=path, reason=exc.strerror)
        ) from None
    try:
        notice = parse_notice(raw.decode("utf-8-sig"), args.year)
    except UnicodeDecodeError as exc:
        raise CliError(text("holiday_notice", "not_utf8", path=path, byte=exc.start)) from None
    except NoticeError as exc:
        raise CliError(f"{path}: {exc}") from None
    out = args.out or config.holiday_table_dir()
    if out.is_dir() or not out.suffix:
        out = out / f"{notice.year}.toml"
    if out.exists() and not args.force:
        raise CliError(text("holiday_notice", "exists", path=out))
    for other in config.holiday_table_paths():
        if other.resolve() == out.resolve():
            continue
        try:
            year = load_year_table(other).year
        except CalendarDataError:
            continue  # the calendar refuses it at start-up, with its own message
        if year == notice.year:
            raise CliError(text("holiday_notice", "other_table", year=year, path=other))
    for line in summary(notice):
        print(line)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(notice.toml(path.name), encoding="utf-8")
    if load_year_table(partial) != notice.table():
        partial.unlink()
        raise AssertionError("the written table does not read back as the notice")
    partial.replace(out)  # a reader never sees half a table
    print(text("holiday_notice", "written", path=out))
    return 0
