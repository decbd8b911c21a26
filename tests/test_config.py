"""Configuration: defaults, environment overrides, and relative paths."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest

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
