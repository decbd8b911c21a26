"""Configuration: defaults, environment overrides, and relative paths."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import Config, ConfigError, load_config


def test_defaults_without_a_file() -> None:
    config = load_config(None, env={})
    assert config.server.port == 8080
    assert config.wechat.api_base_url == "https://api.weixin.qq.com/"
    assert config.telegram.base_url == "https://api.telegram.org/bot"
    assert config.database_url == "sqlite+aiosqlite:///var/mashangyi.db"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[wechat]\napp_secret = "from-file"\n[server]\nport = 9000\n', "utf-8")
    env = {
        "MASHANGYI_CONFIG": str(path),
        "MASHANGYI_WECHAT_APP_SECRET": "from-env",
        "MASHANGYI_SERVER_PORT": "9100",
        "MASHANGYI_CALENDAR_EXTRA_HOLIDAYS": "2027-05-06",
    }
    config = load_config(None, env=env)
    assert config.wechat.app_secret.get_secret_value() == "from-env"
    assert config.server.port == 9100
    assert config.calendar.extra_holidays == [date(2027, 5, 6)]


def test_bad_environment_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"server\.port: expected a number"):
        load_config(None, env={"MASHANGYI_SERVER_PORT": "eighty"})


def test_switches_from_the_environment_are_true_or_false() -> None:
    assert load_config(None, env={}).server.access_log is False
    on = load_config(None, env={"MASHANGYI_SERVER_ACCESS_LOG": "True"})
    assert on.server.access_log is True
    with pytest.raises(ConfigError, match=r"server\.access_log: expected true or false"):
        load_config(None, env={"MASHANGYI_SERVER_ACCESS_LOG": "yes please"})


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "c.toml"
    path.parent.mkdir()
    path.write_text(
        '[database]\nurl = "sqlite+aiosqlite:///data/m.db"\n'
        '[calendar]\nholiday_tables = ["2027.toml"]\n',
        "utf-8",
    )
    config = load_config(path, env={})
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path / 'etc' / 'data' / 'm.db'}"
    assert config.holiday_table_paths() == [tmp_path / "etc" / "2027.toml"]


def test_table_dir_tables_and_listed_ones_each_count_once(tmp_path: Path) -> None:
    (tmp_path / "holidays").mkdir()
    for name in ("holidays/2027.toml", "holidays/2028.toml", "notes.txt", "2029.toml"):
        (tmp_path / name).write_text("", "utf-8")
    path = tmp_path / "c.toml"
    path.write_text('[calendar]\nholiday_tables = ["holidays/2028.toml", "2029.toml"]\n', "utf-8")
    config = load_config(path, env={})
    assert config.holiday_table_dir() == tmp_path / "holidays"
    assert config.holiday_table_paths() == [
        tmp_path / "holidays" / "2027.toml",
        tmp_path / "holidays" / "2028.toml",
        tmp_path / "2029.toml",
    ]


def test_extra_days_must_be_dates(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[calendar]\nextra_holidays = ["May 6"]\n', "utf-8")
    with pytest.raises(ConfigError, match=r"calendar\.extra_holidays: must be a list of dates"):
        load_config(path, env={})


def test_the_example_config_is_valid_and_complete() -> None:
    example = Path(__file__).parents[1] / "config.example.toml"
    config = load_config(example, env={})
    assert config.review.working_days == 5
    documented = {
        section: set(keys) for section, keys in tomllib.loads(example.read_text("utf-8")).items()
    }
    declared = {
        section: set(type(getattr(config, section)).model_fields) for section in Config.model_fields
    }
    assert documented == declared


MODE, KEY = "MASHANGYI_WECHAT_MESSAGE_MODE", "MASHANGYI_WECHAT_ENCODING_AES_KEY"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


def one_line_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env=env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_wechat_message_mode_and_the_key_must_agree() -> None:
    assert load_config(None, env={}).wechat.message_mode == "plain"
    for mode in ("compatible", "safe"):
        wechat = load_config(None, env={MODE: mode, KEY: AES_KEY}).wechat
        assert (wechat.message_mode, wechat.encoding_aes_key.get_secret_value()) == (mode, AES_KEY)
        assert one_line_error({MODE: mode}) == (
            f"wechat.encoding_aes_key: required when wechat.message_mode is '{mode}'"
        )
    # A key without a mode (plain is the default) or with plain: which one was meant?
    for env in ({KEY: AES_KEY}, {KEY: AES_KEY, MODE: "plain"}):
        assert one_line_error(env).startswith(
            "wechat.message_mode: must be compatible or safe when wechat.encoding_aes_key is set"
        )
    assert one_line_error({MODE: "aes", KEY: AES_KEY}) == (
        "wechat.message_mode: must be plain, compatible or safe (got 'aes')"
    )


SECRETS = {
    "MASHANGYI_SERVER_SECRET_KEY": "server-secret-1234",
    "MASHANGYI_WECHAT_APP_SECRET": "app-secret-5678",
    "MASHANGYI_WECHAT_TOKEN": "callback-token-9012",
    KEY: AES_KEY,
    MODE: "safe",
    "MASHANGYI_TELEGRAM_BOT_TOKEN": "123456:bot-token-3456",
    "MASHANGYI_TELEGRAM_WEBHOOK_SECRET": "webhook-secret-7890",
}


def test_secrets_never_print_and_are_read_where_used() -> None:
    config = load_config(None, env=SECRETS)
    shown = [repr(config), str(config), config.model_dump_json(), str(config.model_dump())]
    for name, value in SECRETS.items():
        if name != MODE:
            assert not any(value in text for text in shown), name
    assert config.server.secret_key.get_secret_value() == "server-secret-1234"
    assert config.telegram.webhook_secret.get_secret_value() == "webhook-secret-7890"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (KEY, "s3cr3t-but-short", "wechat.encoding_aes_key: must be 43 characters"),
        ("MASHANGYI_TELEGRAM_WEBHOOK_SECRET", "s3cr3t with spaces", "telegram.webhook_secret:"),
    ],
)
def test_a_wrong_secret_is_named_but_not_shown(name: str, value: str, message: str) -> None:
    text = one_line_error({name: value, MODE: "safe"})
    assert text.startswith(message) and value not in text


def test_only_the_declared_environment_names_count() -> None:
    config = load_config(
        None,
        env={
            "MASHANGYI_SERVER_PUBLIC_BASE_URL": "https://example.org",
            "MASHANGYI_OUTBOX_BASE_BACKOFF_SECONDS": "5",
            "MASHANGYI_WECHAT_NO_SUCH_KEY": "x",  # not a key: left alone, as before
            "MASHANGYI_TEST_DATABASE_URL": "postgresql+asyncpg://elsewhere",
            "mashangyi_server_port": "1",  # the names are upper case
        },
    )
    assert config.server.public_base_url == "https://example.org"
    assert config.outbox.base_backoff_seconds == 5.0
    assert config.server.port == 8080
    assert config.database_url == "sqlite+aiosqlite:///var/mashangyi.db"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nport = 80.5\n", "server.port: expected int, got 80.5"),
        ("[server]\naccess_log = 1\n", "server.access_log: expected bool, got 1"),
        ("[dialogs]\nflood_messages = true\n", "dialogs.flood_messages: expected int, got True"),
        ("[wechat]\ntoken = 12345\n", "wechat.token: expected str, got int"),
        ("[calendar]\nholiday_tables = [2027]\n", "calendar.holiday_tables.0: "),
        ("[reminders]\nwork_end = 2027-01-01\n", "reminders.work_end: expected str"),
        ("server = 8080\n", "server: must be a [server] table (got 8080)"),
    ],
)
def test_a_value_of_the_wrong_type_in_the_file_is_named(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml, "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert "12345" not in str(caught.value)


def test_numbers_in_the_file_take_the_field_type(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[outbox]\nbase_backoff_seconds = 30\n[server]\nport = "9000"\n', "utf-8")
    config = load_config(path, env={})
    assert (config.outbox.base_backoff_seconds, config.server.port) == (30.0, 9000)
    assert isinstance(config.outbox.base_backoff_seconds, float)


def test_the_first_problem_in_declaration_order_is_reported() -> None:
    env = {"MASHANGYI_OUTBOX_BATCH_SIZE": "0", "MASHANGYI_SERVER_PORT": "0"}
    assert one_line_error(env).startswith("server.port: must be between 1 and 65535")
    # Cross-key checks come after every key's own check, as before.
    env = {"MASHANGYI_REMINDERS_WORK_END": "08:00", "MASHANGYI_OUTBOX_BATCH_SIZE": "0"}
    assert one_line_error(env).startswith("outbox.batch_size: must be greater than 0")


def test_the_settings_cannot_be_changed_once_read() -> None:
    config = load_config(None, env={})
    with pytest.raises(ValidationError):
        config.server.port = 1  # type: ignore[misc]
