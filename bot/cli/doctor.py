"""``mashangyi doctor``: check a deployment and say in plain words what is wrong.

Each check prints one line, ``ok``, ``warn`` or ``FAIL``, with what it found and, when
something is wrong, what to do. The exit status is 1 when a check failed (0 with
warnings only), for scripts and deployment pipelines. Nothing is changed: the checks only
read (the media check writes and removes one small file).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import text
from telegram.error import InvalidToken, TelegramError

from bot.config import Config, ConfigError
from bot.poster import FontError, find_font
from bot.services import Services, build_services
from bot.telegram.client import make_bot
from bot.telegram.webhook import WEBHOOK_PATH
from bot.wechat.client import WeChatAPI, WeChatError
from storage.migrate import head_revision, schema_revision

Status = Literal["ok", "warn", "FAIL"]
#: A check that has not answered by then is reported as failed (a hung host, a firewall).
CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class Finding:
    name: str
    status: Status
    said: str


Check = Callable[[Services], Awaitable[list[Finding]]]


async def cmd_doctor(config: Config, args: argparse.Namespace) -> int:
    try:
        services = build_services(config, getattr(args, "clock", None))
    except ConfigError as exc:  # what serve would refuse to start with
        print(f"FAIL  config  {exc}")
        print("1 failed (the other checks need a configuration that starts)")
        return 1
    findings = [Finding("config", "ok", f"read {config.source or 'defaults and environment'}")]
    try:
        for name, check in CHECKS:
            try:
                findings += await asyncio.wait_for(check(services), CHECK_SECONDS)
            except TimeoutError:
                findings.append(Finding(name, "FAIL", f"no answer within {CHECK_SECONDS:.0f} s"))
    finally:
        await services.close()
    width = max(len(f.name) for f in findings)
    for finding in findings:
        print(f"{finding.status:<4}  {finding.name:<{width}}  {finding.said}")
    failed = sum(f.status == "FAIL" for f in findings)
    warned = sum(f.status == "warn" for f in findings)
    print(f"{failed} failed, {warned} warnings, {len(findings) - failed - warned} ok")
    return 1 if failed else 0


async def _database(services: Services) -> list[Finding]:
    try:
        async with services.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        current = await schema_revision(services.engine)
    except Exception as exc:
        return [Finding("database", "FAIL", f"cannot use {_where(services)}: {_short(exc)}")]
    head = head_revision()
    schema = (
        Finding("migrations", "ok", f"schema at {head}")
        if current == head
        else Finding(
            "migrations",
            "FAIL",
            f"schema at {current or 'nothing'}, this code needs {head}: run `mashangyi db upgrade`",
        )
    )
    return [Finding("database", "ok", f"connected to {_where(services)}"), schema]


async def _redis(services: Services) -> list[Finding]:
    if services.redis is None:
        return [Finding("redis", "ok", "not configured (one process; limits kept in-process)")]
    try:
        await services.redis.ping()
    except Exception as exc:
        return [Finding("redis", "FAIL", f"redis.url does not answer: {_short(exc)}")]
    return [Finding("redis", "ok", "answers")]


async def _public_url(services: Services) -> list[Finding]:
    config = services.config
    url = config.server.public_base_url
    host = urlsplit(url).hostname or ""
    platforms = [
        name
        for name, on in (
            ("WeChat", bool(config.wechat.app_id)),
            ("Telegram", bool(config.telegram.bot_token.get_secret_value())),
        )
        if on
    ]
    if not platforms:
        return [Finding("public url", "ok", f"{url} (no platform configured to reach it)")]
    if _local(host):
        return [
            Finding(
                "public url",
                "FAIL",
                f"server.public_base_url is {url}: {' and '.join(platforms)} cannot reach a "
                "local address; set it to the address the internet reaches this service at",
            )
        ]
    if "Telegram" in platforms and not url.startswith("https://"):
        return [Finding("public url", "FAIL", f"{url}: Telegram delivers webhooks to https only")]
    return [Finding("public url", "ok", url)]


def _local(host: str) -> bool:
    if host in ("localhost", "") or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


async def _wechat(services: Services) -> list[Finding]:
    config = services.config
    if not config.wechat.app_id:
        return [Finding("wechat", "ok", "not configured")]
    api = WeChatAPI.from_config(config.wechat, services.clock)
    expected = config.server.public_base_url.rstrip("/") + "/wechat"
    try:
        await api.access_token()
        found = [Finding("wechat", "ok", f"app {config.wechat.app_id}: an access token was issued")]
        try:
            check = await api.call(
                "cgi-bin/callback/check", {"action": "all", "check_operator": "DEFAULT"}
            )
        except WeChatError as exc:
            found.append(Finding("wechat server", "warn", f"could not test: {_short(exc)}"))
        else:
            lost = [p for p in check.get("ping", []) if str(p.get("package_loss", "0%")) != "0%"]
            status: Status = "warn" if lost or not check.get("dns") else "ok"
            found.append(
                Finding(
                    "wechat server",
                    status,
                    f"WeChat reaches the account's server URL: {len(check.get('dns', []))} "
                    f"addresses, {len(lost)} with loss; it must be {expected}",
                )
            )
        return found
    except WeChatError as exc:
        hint = (
            " (add this machine's IP to the account's IP whitelist)" if "40164" in str(exc) else ""
        )
        return [
            Finding(
                "wechat", "FAIL", f"no access token for {config.wechat.app_id}: {_short(exc)}{hint}"
            )
        ]
    finally:
        await api.close()


async def _telegram(services: Services) -> list[Finding]:
    config = services.config
    if not config.telegram.bot_token.get_secret_value():
        return [Finding("telegram", "ok", "not configured")]
    expected = config.server.public_base_url.rstrip("/") + WEBHOOK_PATH
    bot = make_bot(config)
    try:
        async with bot:  # initialize() calls getMe
            username = bot.username
            info = await bot.get_webhook_info()
    except InvalidToken:
        return [Finding("telegram", "FAIL", "telegram.bot_token: the Bot API rejects this token")]
    except TelegramError as exc:
        return [Finding("telegram", "FAIL", f"the Bot API does not answer: {_short(exc)}")]
    found = [Finding("telegram", "ok", f"@{username}")]
    wanted = config.telegram.bot_username.lstrip("@")
    if wanted and wanted != username:
        found.append(
            Finding(
                "telegram",
                "FAIL",
                f"telegram.bot_username is @{wanted}, the token is @{username}'s",
            )
        )
    if not info.url:
        found.append(
            Finding(
                "telegram webhook",
                "warn",
                f"none set: run `mashangyi telegram set-webhook` ({expected})",
            )
        )
    elif info.url != expected:
        found.append(
            Finding(
                "telegram webhook",
                "FAIL",
                f"points at {info.url}, not {expected}: run `mashangyi telegram set-webhook`",
            )
        )
    else:
        found.append(
            Finding(
                "telegram webhook", "ok", f"{info.url}, {info.pending_update_count} updates waiting"
            )
        )
    if info.last_error_message:
        when = f"{info.last_error_date:%Y-%m-%d %H:%M} UTC: " if info.last_error_date else ""
        found.append(
            Finding("telegram webhook", "warn", f"last error {when}{info.last_error_message}")
        )
    return found


async def _fonts(services: Services) -> list[Finding]:
    configured = services.config.poster.font
    try:
        font = find_font(Path(configured) if configured else None)
    except FontError as exc:
        return [Finding("poster font", "FAIL", str(exc))]
    return [Finding("poster font", "ok", str(font.path))]


async def _calendar(services: Services) -> list[Finding]:
    warning = services.calendar_warning()
    return [
        Finding("calendar", "warn", warning)
        if warning
        else Finding("calendar", "ok", "the next 90 days are covered")
    ]


async def _media(services: Services) -> list[Finding]:
    """Write a file into the media store, read it back and remove it: the store the
    service uses, local directory or bucket."""
    store = services.media_store
    key, probe = f".doctor/{os.getpid()}-{secrets.token_hex(4)}", b"doctor"
    try:
        await store.put(key, probe, "text/plain")
        back = await store.get(key)
        await store.delete(key)
    except OSError as exc:
        return [Finding("media", "FAIL", f"cannot write in {store.describe()}: {_short(exc)}")]
    if back != probe:
        return [Finding("media", "FAIL", f"{store.describe()} gave back other bytes")]
    return [Finding("media", "ok", f"{store.describe()} is writable")]


def _where(services: Services) -> str:
    url = services.engine.url
    return f"{url.get_backend_name()} {url.host or ''}{'/' if url.host else ''}{url.database}"


def _short(exc: BaseException) -> str:
    said = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {said}"[:200] if said else type(exc).__name__


CHECKS: tuple[tuple[str, Check], ...] = (
    ("database", _database),
    ("redis", _redis),
    ("public url", _public_url),
    ("wechat", _wechat),
    ("telegram", _telegram),
    ("poster font", _fonts),
    ("calendar", _calendar),
    ("media", _media),
)
