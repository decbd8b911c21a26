"""Configuration: a TOML file (every key documented in config.example.toml) with
environment overrides ``MASHANGYI_<SECTION>_<KEY>`` (e.g. ``MASHANGYI_WECHAT_APP_SECRET``).

One typed model (pydantic-settings): a class per section, a field per key with its default
and its check; a wrong or missing value stops start-up with one line naming the key.
Secrets are ``SecretStr``: printing the settings shows ``**********``, and code that needs a
secret calls ``get_secret_value()`` where it uses it.

Over 400 lines on purpose: the whole schema of config.example.toml, section by section, next
to the one loader that reads it, so a key's default, check and reading are found together.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "MASHANGYI_CONFIG"


class ConfigError(ValueError):
    """A configuration problem, phrased for the person running the service."""


def _problem(message: str) -> PydanticCustomError:
    """A validation error whose text is ours alone (pydantic formats the template)."""
    return PydanticCustomError("config", "{problem}", {"problem": message})


@dataclass(frozen=True)
class Check:
    """A field's check (``Annotated`` metadata): returns a problem, or None."""

    problem: Callable[[Any], str | None]


def _rule(ok: Callable[[Any], bool], problem: str) -> Check:
    return Check(lambda value: None if ok(value) else problem)


def _url_scheme(*schemes: str) -> Check:
    return _rule(lambda value: value.startswith(schemes), "must start with " + " or ".join(schemes))


def _optional(check: Check) -> Check:
    return Check(lambda value: None if value == "" else check.problem(value))


def _one_of(*choices: str) -> Check:
    wanted = "must be " + ", ".join(choices[:-1]) + " or " + choices[-1]
    return _rule(lambda value: value in choices, wanted)


def _dates(value: list[Any]) -> str | None:
    bad = [v for v in value if not isinstance(v, date)]
    return f"must be a list of dates (YYYY-MM-DD), not {bad[0]!r}" if bad else None


PORT = _rule(lambda value: 0 < value < 65536, "must be between 1 and 65535")
POSITIVE = _rule(lambda value: value > 0, "must be greater than 0")
AES_KEY = _rule(lambda value: len(value) == 43, "must be 43 characters")
SECRET_TOKEN = _rule(
    lambda value: re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value) is not None,
    "must be 1-256 characters of A-Z, a-z, 0-9, _ and -",
)
CLOCK_TIME = _rule(
    lambda value: re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value) is not None,
    "must be HH:MM (24 h)",
)
DATES = Check(_dates)

#: WeChat's message modes, as the admin console names them: 明文模式, 兼容模式, 安全模式.
MessageMode = Literal["plain", "compatible", "safe"]
MESSAGE_MODES: tuple[str, ...] = get_args(MessageMode)
LogFormat = Literal["text", "json"]


def _kind(annotation: Any) -> type:
    """The TOML type a field is written in: secrets and choices are strings."""
    if annotation is SecretStr or get_origin(annotation) is Literal:
        return str
    kind = get_origin(annotation) or annotation
    assert isinstance(kind, type), annotation
    return kind


def _coerce(kind: type, raw: Any, shown: str) -> Any:
    """TOML values as they are (an int where a float is wanted is fine); environment
    strings parsed to the field's type."""
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if kind is list and isinstance(raw, str):  # environment: comma-separated
        items = [s.strip() for s in raw.split(",") if s.strip()]
        return [
            date.fromisoformat(s) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) else s for s in items
        ]
    if kind is bool and isinstance(raw, str):  # environment: true/false
        if raw.lower() not in ("true", "false"):
            raise _problem(f"expected true or false, got {shown}")
        return raw.lower() == "true"
    if isinstance(raw, str) and kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise _problem(f"expected a number, got {shown}") from None
    if not isinstance(raw, kind) or (isinstance(raw, bool) and kind is not bool):
        raise _problem(f"expected {kind.__name__}, got {shown}")
    return raw


class Section(BaseModel):
    """One ``[section]``: every given value is coerced and checked by its field's
    declaration (pydantic's own, laxer, conversions would accept "yes" for a switch)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _coerce_and_check(cls, raw: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        field = cls.model_fields[info.field_name]
        secret = field.annotation is SecretStr
        # A secret never appears in a message, not even a wrong one.
        shown = type(raw).__name__ if secret else repr(raw)
        value = _coerce(_kind(field.annotation), raw, shown)
        for check in field.metadata:
            if isinstance(check, Check) and (problem := check.problem(value)):
                raise _problem(problem if secret else f"{problem} (got {value!r})")
        return value


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: Annotated[int, PORT] = 8080
    public_base_url: Annotated[str, _url_scheme("http://", "https://")] = "http://127.0.0.1:8080"
    secret_key: SecretStr = SecretStr("")
    access_log: bool = False
    #: "json": one JSON object a line, for a log service; "text": plain lines.
    log_format: Annotated[LogFormat, _one_of(*get_args(LogFormat))] = "text"


class DatabaseSettings(Section):
    url: Annotated[str, _url_scheme("sqlite+aiosqlite://", "postgresql+asyncpg://")] = (
        "sqlite+aiosqlite:///var/mashangyi.db"
    )


class RedisSettings(Section):
    url: Annotated[str, _optional(_url_scheme("redis://", "rediss://"))] = ""


class WeChatSettings(Section):
    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    encoding_aes_key: Annotated[SecretStr, _optional(AES_KEY)] = SecretStr("")
    message_mode: Annotated[MessageMode, _one_of(*MESSAGE_MODES)] = "plain"
    api_base_url: Annotated[str, _url_scheme("http://", "https://")] = "https://api.weixin.qq.com/"
    #: Where the web authorization's authorize page is (网页授权, connect/oauth2/authorize).
    oauth_base_url: Annotated[str, _url_scheme("http://", "https://")] = (
        "https://open.weixin.qq.com/"
    )
    template_id: str = ""
    cs_window_hours: Annotated[float, POSITIVE] = 48.0
    subscribe_template_id: str = ""
    subscribe_long_term: bool = False


class TelegramSettings(Section):
    bot_token: SecretStr = SecretStr("")
    bot_username: str = ""
    webhook_secret: Annotated[SecretStr, _optional(SECRET_TOKEN)] = SecretStr("")
    base_url: Annotated[str, _url_scheme("http://", "https://")] = "https://api.telegram.org/bot"
    messages_per_second: Annotated[float, POSITIVE] = 30.0
    allow_paid_broadcast: bool = False
    paid_messages_per_second: Annotated[float, POSITIVE] = 1000.0


class CalendarSettings(Section):
    #: Every ``*.toml`` here is a holiday table; ``calendar import`` writes here.
    table_dir: str = "holidays"
    holiday_tables: list[str] = []
    extra_holidays: Annotated[list[date], DATES] = []
    extra_workdays: Annotated[list[date], DATES] = []


class DialogsSettings(Section):
    idle_minutes: Annotated[float, POSITIVE] = 30.0
    flood_messages: Annotated[int, POSITIVE] = 10
    flood_seconds: Annotated[float, POSITIVE] = 10.0


class InboxSettings(Section):
    spool_dir: str = "var/spool"


MediaBackend = Literal["local", "s3"]


class MediaSettings(Section):
    #: "local": files under ``dir``; "s3": an S3-compatible bucket (``s3_*`` keys).
    backend: MediaBackend = "local"
    dir: str = "var/media"
    max_bytes: Annotated[int, POSITIVE] = 10 * 1024 * 1024
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_prefix: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")


class ReviewSettings(Section):
    working_days: Annotated[int, POSITIVE] = 5
    link_hours: Annotated[float, POSITIVE] = 72.0


class PosterSettings(Section):
    font: str = ""


class RemindersSettings(Section):
    work_start: Annotated[str, CLOCK_TIME] = "09:00"
    work_end: Annotated[str, CLOCK_TIME] = "17:30"
    escalate_after_days: Annotated[int, POSITIVE] = 3
    #: “Is it solved?” unanswered this many days after implementation: asked once more,
    #: and as many days later recorded as unanswered.
    satisfaction_days: Annotated[float, POSITIVE] = 7.0
    sweep_minutes: Annotated[float, POSITIVE] = 10.0


class MeetingsSettings(Section):
    #: Remote participants are reminded this many minutes before a meeting (each moved
    #: earlier when it would fall in their night, 22:00–07:00 their time).
    reminder_minutes: list[Annotated[int, POSITIVE]] = Field(default_factory=lambda: [1440, 30])


class OutboxSettings(Section):
    max_attempts: Annotated[int, POSITIVE] = 8
    base_backoff_seconds: Annotated[float, POSITIVE] = 30.0
    max_backoff_seconds: Annotated[float, POSITIVE] = 21600.0
    batch_size: Annotated[int, POSITIVE] = 50
    poll_seconds: Annotated[float, POSITIVE] = 1.0
    worker_id: str = ""


class PushesSettings(Section):
    chunk_size: Annotated[int, POSITIVE] = 500
    unfollow_link_days: Annotated[float, POSITIVE] = 365.0


class ModerationSettings(Section):
    sensitive_words: list[str] = []
    sensitive_words_file: str = ""


def _sections(settings_cls: type[BaseSettings]) -> dict[str, type[Section]]:
    """Each ``[section]``'s model, by name, in declaration order."""
    found = {}
    for name, field in settings_cls.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, Section)
        found[name] = field.annotation
    return found


class SectionEnvSource(PydanticBaseSettingsSource):
    """``MASHANGYI_<SECTION>_<KEY>`` for exactly the declared keys, from ``env``. Keys hold
    underscores (``APP_SECRET``), so a nested delimiter could not tell where a section name
    ends; looking up each declared name also leaves other MASHANGYI_ variables alone."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, True

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, str]] = {}
        for section, model in _sections(self.settings_cls).items():
            for key in model.model_fields:
                name = f"MASHANGYI_{section}_{key}".upper()
                if name in self.env:
                    found.setdefault(section, {})[key] = self.env[name]
        return found


class Config(BaseSettings):
    """The service's settings, read by :func:`load_config`."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", case_sensitive=True)

    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    wechat: WeChatSettings = Field(default_factory=WeChatSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    dialogs: DialogsSettings = Field(default_factory=DialogsSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    poster: PosterSettings = Field(default_factory=PosterSettings)
    reminders: RemindersSettings = Field(default_factory=RemindersSettings)
    meetings: MeetingsSettings = Field(default_factory=MeetingsSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    pushes: PushesSettings = Field(default_factory=PushesSettings)
    moderation: ModerationSettings = Field(default_factory=ModerationSettings)

    _source: Path | None = PrivateAttr(None)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_config() hands in what the file and the environment say; pydantic-settings'
        # own sources would also read $SERVER, .env and the like.
        return (init_settings,)

    @model_validator(mode="after")
    def _keys_agree(self) -> Config:
        reminders = self.reminders
        if reminders.work_end <= reminders.work_start:  # HH:MM sorts like the time it is
            raise _problem(
                f"reminders.work_end: must be later than work_start ({reminders.work_start}) "
                f"(got {reminders.work_end!r})"
            )
        # The mode and the key agree: a key with mode plain is ambiguous (which one was
        # meant?), and compatible or safe cannot decrypt without it.
        if self.media.backend == "s3" and not self.media.s3_bucket:
            raise _problem("media.s3_bucket: required when media.backend is 's3'")
        mode, has_key = self.wechat.message_mode, bool(self.wechat.encoding_aes_key)
        if mode == "plain" and has_key:
            raise _problem(
                "wechat.message_mode: must be compatible or safe when wechat.encoding_aes_key "
                "is set (or remove the key for plain) (got 'plain')"
            )
        if mode != "plain" and not has_key:
            raise _problem(
                f"wechat.encoding_aes_key: required when wechat.message_mode is {mode!r}"
            )
        return self

    @property
    def source(self) -> Path | None:
        """The file read, if any."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """The config file's folder (else the working directory): relative paths start here."""
        return self._base_dir

    @property
    def database_url(self) -> str:
        return self.database.url

    def media_dir(self) -> Path:
        return self.base_dir / self.media.dir

    def spool_dir(self) -> Path:
        return self.base_dir / self.inbox.spool_dir

    def sensitive_words(self) -> list[str]:
        """The sensitive-word list: ``moderation.sensitive_words`` and the words of
        ``sensitive_words_file`` (one a line, ``#`` comments; relative to the config file).
        A file named but missing stops start-up like any wrong value (``ConfigError``)."""
        words = [w.strip() for w in self.moderation.sensitive_words if w.strip()]
        name = self.moderation.sensitive_words_file
        if name:
            path = self.base_dir / name
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"moderation.sensitive_words_file: {exc}") from None
            words += [w for w in (ln.split("#", 1)[0].strip() for ln in lines) if w]
        return list(dict.fromkeys(words))

    def holiday_table_dir(self) -> Path:
        return self.base_dir / self.calendar.table_dir

    def holiday_table_paths(self) -> list[Path]:
        """The tables in ``calendar.table_dir`` and those listed in ``calendar.holiday_tables``
        (a file both in the folder and listed counts once), relative paths taken from the
        config file's folder."""
        found = sorted(self.holiday_table_dir().glob("*.toml"))
        listed = [self.base_dir / p for p in self.calendar.holiday_tables]
        resolved = {path.resolve() for path in found}
        return found + [path for path in listed if path.resolve() not in resolved]


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or ``$MASHANGYI_CONFIG``; none at all means built-in defaults)."""
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    source = Path(path) if path else None
    values: dict[str, Any] = {}
    if source:
        if not source.is_file():  # the TOML source would quietly read nothing
            raise ConfigError(f"config file not found: {source}")
        try:
            values = TomlConfigSettingsSource(Config, toml_file=source).toml_data
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        _refuse_unknown_keys(values)
    for section, overrides in SectionEnvSource(Config, env)().items():
        values[section] = {**values.get(section, {}), **overrides}
    try:
        config = Config(**values)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc)) from None
    base_dir = source.parent if source else Path.cwd()
    if config.database.url.startswith("sqlite+aiosqlite:///") and source:
        database = config.database.model_copy(
            update={"url": _anchor_sqlite(config.database.url, base_dir)}
        )
        config = config.model_copy(update={"database": database})
    config._source, config._base_dir = source, base_dir
    return config


def _refuse_unknown_keys(data: Mapping[str, Any]) -> None:
    """A misspelt key is refused by name rather than silently left at its default."""
    sections = _sections(Config)
    for section in data:
        if section not in sections:
            raise ConfigError(f"unknown config section [{section}]")
    for section, model in sections.items():
        given = data.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{section}: must be a [{section}] table (got {given!r})")
        for key in given:
            if key not in model.model_fields:
                raise ConfigError(f"unknown config key {section}.{key}")


def _first_problem(exc: ValidationError) -> str:
    """The first problem in declaration order, as ``section.key: problem``."""
    error = exc.errors(include_url=False)[0]
    name = ".".join(str(part) for part in error["loc"])
    return f"{name}: {error['msg']}" if name else error["msg"]


def _anchor_sqlite(url: str, base_dir: Path) -> str:
    """A relative SQLite path is relative to the config file, not to where one runs."""
    path = url.removeprefix("sqlite+aiosqlite:///")
    if path.startswith("/") or path == ":memory:":
        return url
    return f"sqlite+aiosqlite:///{(base_dir / path).resolve()}"
