"""``mashangyi invite`` and ``mashangyi roles``: handing out and taking back roles.

``invite`` makes a one-time, expiring invite (``workflow.invites``) and prints it once as a
Telegram deep link ``https://t.me/<bot>?start=i_<secret>`` and a WeChat temporary QR code
(``QR_STR_SCENE``, scene ``i_<secret>``; we encode the returned ``url`` ourselves), with a
PNG of each. The database keeps only the secret's hash: this output is the only copy.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.qr import RAW_SIZE, QRError, telegram_link
from bot.services import Services
from bot.wechat.client import WeChatAPI, WeChatError
from dialogs.types import invite_payload
from notices.drawing import qr_image
from storage.db import transaction
from storage.models import Room
from workflow.clock import CHINA
from workflow.invites import (
    MAX_VALIDITY,
    RoleAdminError,
    create_invite,
    new_secret,
    revoke_grant,
    revoke_invite,
)
from workflow.people import GrantView, live_grants
from workflow.rooms import get_room
from workflow.texts import label

#: "30m", "72h", "7d".
VALIDITY = re.compile(r"([0-9]{1,7})([mhd])")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}
#: WeChat's limit for a temporary QR code, in seconds (30 days).
WECHAT_MAX_EXPIRE = int(MAX_VALIDITY.total_seconds())


class CommandError(Exception):
    """One line for the operator; exit status 1."""


def parse_validity(text: str) -> timedelta:
    """``--expires``: a whole number of minutes, hours or days, more than 0, at most 30d."""
    found = VALIDITY.fullmatch(text.strip())
    if found is None:
        raise CommandError(
            f"--expires {text!r}: give a whole number followed by m, h or d (e.g. 30m, 72h, 7d)"
        )
    validity = timedelta(**{UNITS[found[2]]: int(found[1])})
    if validity <= timedelta(0):
        raise CommandError(f"--expires {text!r}: an invite must be valid for some time")
    if validity > MAX_VALIDITY:
        raise CommandError(f"--expires {text!r}: at most 30d (WeChat's limit for temporary codes)")
    return validity


def _when(moment: datetime | None) -> str:
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _role(role: str) -> str:
    return f"{label('roles', role)} ({role})"


@dataclass(frozen=True)
class PrintedInvite:
    invite_id: int
    payload: str  # "i_<secret>"
    expires_at: datetime
    telegram_link: str = ""  # "" when telegram.bot_username is empty
    wechat_url: str = ""  # "" when WeChat is not configured
    wechat_expire_seconds: int | None = None
    files: list[Path] = field(default_factory=list)


async def make_invite(
    services: Services,
    room_code: str,
    role: str,
    validity: timedelta,
    out: Path,
    say: Callable[[str], object] = print,
) -> PrintedInvite:
    config = services.config
    with_wechat = bool(config.wechat.app_id)
    bot_username = config.telegram.bot_username
    if not with_wechat and not bot_username:
        raise CommandError(
            "neither WeChat (wechat.app_id) nor Telegram (telegram.bot_username) is "
            "configured: an invite could not be opened anywhere"
        )
    async with services.sessions() as session:
        if await get_room(session, room_code) is None:
            raise CommandError(f"no room with code {room_code!r} (see `mashangyi rooms list`)")
    try:
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create {out}: {exc.strerror}") from None

    secret = new_secret()
    payload = invite_payload(secret)
    link = ""
    if bot_username:
        try:
            link = telegram_link(bot_username, payload)
        except QRError as exc:
            raise CommandError(str(exc)) from None
    now = services.clock.now()
    wechat_url, wechat_expires = "", None
    if with_wechat:
        api = WeChatAPI.from_config(config.wechat, services.clock)
        seconds = min(int(validity.total_seconds()), WECHAT_MAX_EXPIRE)
        try:
            code = await api.create_qrcode(payload, expire_seconds=seconds)
        except WeChatError as exc:
            raise CommandError(
                f"WeChat could not make the temporary QR code: {exc}; no invite was stored"
            ) from None
        finally:
            await api.close()
        wechat_url, wechat_expires = code.url, code.expire_seconds or seconds

    async with transaction(services.sessions) as session:
        room = await get_room(session, room_code)
        assert room is not None
        try:
            invite = await create_invite(
                session, room=room, role=role, secret=secret, now=now, validity=validity
            )
        except RoleAdminError as exc:
            raise CommandError(str(exc)) from None
        room_label = f"{room.code} {room.name}"
    assert invite.id is not None
    printed = PrintedInvite(
        invite.id, payload, invite.expires_at, link, wechat_url, wechat_expires, []
    )
    say(
        f"invite {invite.id}: {_role(role)} of {room_label}, one use, "
        f"valid until {_when(invite.expires_at)} (China time)"
    )
    if link:
        say(f"Telegram: {link}")
    else:
        say("note: telegram.bot_username is empty: no Telegram link")
    if wechat_url:
        say(f"WeChat:   {wechat_url} (temporary QR code, expires in {wechat_expires} s)")
    else:
        say("note: WeChat is not configured (wechat.app_id is empty): no WeChat code")
    stem = f"invite-{invite.id}-{room_code}-{role}"
    images = [(out / f"{stem}-telegram.png", link), (out / f"{stem}-wechat.png", wechat_url)]
    images = [(path, data) for path, data in images if data]
    try:
        await asyncio.to_thread(_write_pngs, images)
    except OSError as exc:
        raise CommandError(
            f"cannot write the PNGs to {out}: {exc.strerror}; the link above works without "
            f"them (or withdraw it: mashangyi invite revoke {invite.id})"
        ) from None
    for path, _ in images:
        printed.files.append(path)
        say(f"PNG:      {path}")
    say(
        "The secret is shown only now (only its hash is stored): hand it over privately. "
        f"To withdraw it before it is used: mashangyi invite revoke {invite.id}"
    )
    return printed


def _write_pngs(images: list[tuple[Path, str]]) -> None:
    for path, data in images:
        qr_image(data, RAW_SIZE).save(path)


async def withdraw_invite(services: Services, invite_id: int, say: Callable[[str], object]) -> None:
    try:
        async with transaction(services.sessions) as session:
            invite = await revoke_invite(session, invite_id, services.clock.now())
    except RoleAdminError as exc:
        raise CommandError(str(exc)) from None
    say(f"invite {invite.id} ({_role(invite.role)}) revoked: it can no longer be opened")


def grant_row(view: GrantView) -> dict[str, Any]:
    grant, person, by = view.grant, view.person, view.granted_by
    return {
        "id": grant.id,
        "room": view.room.code,
        "room_name": view.room.name,
        "role": grant.role,
        "role_label": label("roles", grant.role),
        "person_id": person.id,
        "person": person.display_name,
        "identities": [{"channel": i.channel, "id": i.external_id} for i in view.identities],
        "granted_at": grant.granted_at.isoformat(),
        "granted_by": {"person_id": by.id, "name": by.display_name} if by else None,
        "invite_id": grant.invite_id,
    }


async def list_roles(
    services: Services, room_code: str | None, as_json: bool, say: Callable[[str], object]
) -> None:
    async with services.sessions() as session:
        room_id = None
        if room_code:
            room = await get_room(session, room_code)
            if room is None:
                raise CommandError(f"no room with code {room_code!r} (see `mashangyi rooms list`)")
            room_id = room.id
        views = await live_grants(session, room_id)
    rows = [grant_row(view) for view in views]
    if as_json:
        say(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for view, row in zip(views, rows, strict=True):
        who = f"{row['person'] or '(no name)'} (#{row['person_id']})"
        ids = ", ".join(f"{i['channel']}:{i['id']}" for i in row["identities"]) or "no chat"
        by, invite = row["granted_by"], row["invite_id"]
        if by:
            source = f"by {by['name'] or '(no name)'} (#{by['person_id']})"
        else:
            source = "by the command line" if invite else "(granter not recorded)"
        if invite:
            source += f" through invite {invite}"
        say(
            f"{row['id']:>5}  {row['room']} {row['room_name']}  {_role(row['role'])}  {who}  "
            f"[{ids}]  granted {_when(view.grant.granted_at)} {source}"
        )
    say(f"{len(rows)} live role grants")


async def take_back_role(services: Services, grant_id: int, say: Callable[[str], object]) -> None:
    try:
        async with transaction(services.sessions) as session:
            grant = await revoke_grant(session, grant_id, services.clock.now())
            room = await session.get(Room, grant.room_id)
    except RoleAdminError as exc:
        raise CommandError(str(exc)) from None
    say(
        f"role grant {grant.id} revoked: person #{grant.person_id} is no longer "
        f"{_role(grant.role)} of {room.code if room else grant.room_id}"
    )
