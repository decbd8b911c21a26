"""Configuration: a TOML file (every key documented in config.example.toml) with
environment overrides ``MASHANGYI_<SECTION>_<KEY>`` (e.g. ``MASHANGYI_WECHAT_APP_SECRET``).

Every key is declared once in ``SCHEMA``; a wrong or missing value stops start-up with one
message naming the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

CONFIG_ENV = "MASHANGYI_CONFIG"


class ConfigError(ValueError):
    """A configuration problem, phrased for the person running the service."""


@dataclass(frozen=True)
class Key:
    kind: type
    default: Any
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None


def _url_scheme(*schemes: str) -> Callable[[Any], str | None]:
    def check(value: str) -> str | None:
        if not value.startswith(schemes):
            return "must start with " + " or ".join(schemes)
        return None

    return check


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value == "" else check(value)


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else "must be between 1 and 65535"


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _aes_key(value: str) -> str | None:
    return None if len(value) == 43 else "must be 43 characters"


#: WeChat's message modes, as the admin console names them: 明文模式, 兼容模式, 安全模式.
MESSAGE_MODES = ("plain", "compatible", "safe")


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    wanted = "must be " + ", ".join(choices[:-1]) + " or " + choices[-1]
    return lambda value: None if value in choices else wanted


def _secret_token(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value):
        return None
    return "must be 1-256 characters of A-Z, a-z, 0-9, _ and -"


def _clock_time(value: str) -> str | None:
    return None if re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value) else "must be HH:MM (24 h)"


def _dates(value: list[Any]) -> str | None:
    bad = [v for v in value if not isinstance(v, date)]
    return f"must be a list of dates (YYYY-MM-DD), not {bad[0]!r}" if bad else None


SCHEMA: dict[str, dict[str, Key]] = {
    "server": {
        "host": Key(str, "127.0.0.1"),
        "port": Key(int, 8080, _port),
        "public_base_url": Key(str, "http://127.0.0.1:8080", _url_scheme("http://", "https://")),
        "secret_key": Key(str, ""),
        "access_log": Key(bool, False),
    },
    "database": {
        "url": Key(
            str,
            "sqlite+aiosqlite:///var/mashangyi.db",
            _url_scheme("sqlite+aiosqlite://", "postgresql+asyncpg://"),
        ),
    },
    "redis": {"url": Key(str, "", _optional(_url_scheme("redis://", "rediss://")))},
    "wechat": {
        "app_id": Key(str, ""),
        "app_secret": Key(str, ""),
        "token": Key(str, ""),
        "encoding_aes_key": Key(str, "", _optional(_aes_key)),
        "message_mode": Key(str, "plain", _one_of(*MESSAGE_MODES)),
        "api_base_url": Key(str, "https://api.weixin.qq.com/", _url_scheme("http://", "https://")),
        "template_id": Key(str, ""),
        "cs_window_hours": Key(float, 48.0, _positive),
    },
    "telegram": {
        "bot_token": Key(str, ""),
        "bot_username": Key(str, ""),
        "webhook_secret": Key(str, "", _optional(_secret_token)),
        "base_url": Key(str, "https://api.telegram.org/bot", _url_scheme("http://", "https://")),
    },
    "calendar": {
        "holiday_tables": Key(list, []),
        "extra_holidays": Key(list, [], _dates),
        "extra_workdays": Key(list, [], _dates),
    },
    "dialogs": {
        "idle_minutes": Key(float, 30.0, _positive),
        "flood_messages": Key(int, 10, _positive),
        "flood_seconds": Key(float, 10.0, _positive),
    },
    "inbox": {
        "spool_dir": Key(str, "var/spool"),
    },
    "media": {
        "dir": Key(str, "var/media"),
        "max_bytes": Key(int, 10 * 1024 * 1024, _positive),
    },
    "review": {
        "working_days": Key(int, 5, _positive),
        "link_hours": Key(float, 72.0, _positive),
    },
    "poster": {
        "font": Key(str, ""),
    },
    "reminders": {
        "work_start": Key(str, "09:00", _clock_time),
        "work_end": Key(str, "17:30", _clock_time),
        "escalate_after_days": Key(int, 3, _positive),
        "sweep_minutes": Key(float, 10.0, _positive),
    },
    "outbox": {
        "max_attempts": Key(int, 8, _positive),
        "base_backoff_seconds": Key(float, 30.0, _positive),
        "max_backoff_seconds": Key(float, 21600.0, _positive),
        "batch_size": Key(int, 50, _positive),
        "poll_seconds": Key(float, 1.0, _positive),
        "worker_id": Key(str, ""),
    },
}

#: Values that must never be printed (``config show`` and logs mask them).
SECRETS = {
    ("server", "secret_key"),
    ("wechat", "app_secret"),
    ("wechat", "token"),
    ("wechat", "encoding_aes_key"),
    ("telegram", "bot_token"),
    ("telegram", "webhook_secret"),
}


@dataclass(frozen=True)
class Config:
    values: Mapping[str, Mapping[str, Any]]
    source: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return self.values[section]

    @property
    def database_url(self) -> str:
        return self.values["database"]["url"]

    def media_dir(self) -> Path:
        return self.base_dir / self.values["media"]["dir"]

    def spool_dir(self) -> Path:
        return self.base_dir / self.values["inbox"]["spool_dir"]

    def holiday_table_paths(self) -> list[Path]:
        """Config table paths, relative ones taken from the config file's folder."""
        return [self.base_dir / p for p in self.values["calendar"]["holiday_tables"]]


def _coerce(kind: type, raw: Any, name: str) -> Any:
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if kind is list and isinstance(raw, str):  # environment: comma-separated
        items = [s.strip() for s in raw.split(",") if s.strip()]
        return [
            date.fromisoformat(s) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) else s for s in items
        ]
    if kind is bool and isinstance(raw, str):  # environment: true/false
        if raw.lower() not in ("true", "false"):
            raise ConfigError(f"{name}: expected true or false, got {raw!r}")
        return raw.lower() == "true"
    if isinstance(raw, str) and kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if not isinstance(raw, kind) or (isinstance(raw, bool) and kind is not bool):
        raise ConfigError(f"{name}: expected {kind.__name__}, got {raw!r}")
    return raw


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or ``$MASHANGYI_CONFIG``; none at all means built-in defaults)."""
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    source = None
    if path:
        source = Path(path)
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {source}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    for section in data:
        if section not in SCHEMA:
            raise ConfigError(f"unknown config section [{section}]")
    values: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = data.get(section, {})
        for key in given:
            if key not in keys:
                raise ConfigError(f"unknown config key {section}.{key}")
        values[section] = {}
        for key, spec in keys.items():
            name = f"{section}.{key}"
            env_name = f"MASHANGYI_{section}_{key}".upper()
            raw = env[env_name] if env_name in env else given.get(key, spec.default)
            value = _coerce(spec.kind, raw, name)
            problem = spec.check(value) if spec.check else None
            if problem:
                raise ConfigError(f"{name}: {problem} (got {value!r})")
            values[section][key] = value
    reminders = values["reminders"]
    if reminders["work_end"] <= reminders["work_start"]:  # HH:MM sorts like the time it is
        raise ConfigError(
            f"reminders.work_end: must be later than work_start ({reminders['work_start']}) "
            f"(got {reminders['work_end']!r})"
        )
    _check_message_mode(values["wechat"])
    base_dir = source.parent if source else Path.cwd()
    if values["database"]["url"].startswith("sqlite+aiosqlite:///") and source:
        values["database"]["url"] = _anchor_sqlite(values["database"]["url"], base_dir)
    return Config(values=values, source=source, base_dir=base_dir)


def _check_message_mode(wechat: Mapping[str, Any]) -> None:
    """The mode and the key agree: a key with mode plain is ambiguous (which one was
    meant?), and compatible or safe cannot decrypt without it."""
    mode = wechat["message_mode"]
    if mode == "plain" and wechat["encoding_aes_key"]:
        raise ConfigError(
            "wechat.message_mode: must be compatible or safe when wechat.encoding_aes_key "
            "is set (or remove the key for plain) (got 'plain')"
        )
    if mode != "plain" and not wechat["encoding_aes_key"]:
        raise ConfigError(f"wechat.encoding_aes_key: required when wechat.message_mode is {mode!r}")


def _anchor_sqlite(url: str, base_dir: Path) -> str:
    """A relative SQLite path is relative to the config file, not to where one runs."""
    path = url.removeprefix("sqlite+aiosqlite:///")
    if path.startswith("/") or path == ":memory:":
        return url
    return f"sqlite+aiosqlite:///{(base_dir / path).resolve()}"
