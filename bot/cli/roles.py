"""``mashangyi invite [revoke]`` and ``mashangyi roles list|revoke``: the arguments and the
one-line errors; bot/invites.py does the work (it prints the invite, the only copy)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from bot.cli.common import CliError, with_services
from bot.config import Config
from bot.services import Services


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

    return await with_services(config, args, guarded)


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
