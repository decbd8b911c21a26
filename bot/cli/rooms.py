"""``mashangyi rooms import|list`` and ``mashangyi qr``: the room tree and its codes."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli.common import CliError, with_services
from bot.config import Config
from bot.services import Services
from storage.db import transaction
from storage.models import Room
from workflow.queries import all_rooms
from workflow.rooms import RoomImportError, import_rooms, parse_rooms_csv


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

    return await with_services(config, args, work)


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

    return await with_services(config, args, work)


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

    return await with_services(config, args, work)
