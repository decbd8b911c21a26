"""``mashangyi doctor`` against the fake WeChat and Telegram APIs: a deployment in order
passes (exit 0); each thing wrong is named in plain words, with what to do (exit 1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli import run
from storage.migrate import upgrade
from tests.fakes.telegram_api import TOKEN, FakeBotAPI
from tests.fakes.wechat_api import FakeWeChatAPI

PUBLIC = "https://mashangyi.example.org"


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeWeChatAPI, FakeBotAPI]]:
    wechat, telegram = FakeWeChatAPI(), FakeBotAPI()
    await wechat.start()
    await telegram.start()
    yield wechat, telegram
    await telegram.close()
    await wechat.close()


def _config(
    tmp_path: Path,
    database_url: str,
    wechat: FakeWeChatAPI,
    telegram: FakeBotAPI,
    *,
    public: str = PUBLIC,
    secret: str = "s3cret",
    extra: str = "",
) -> Path:
    path = tmp_path / "doctor.toml"
    path.write_text(
        f'[server]\npublic_base_url = "{public}"\nsecret_key = "{"k" * 32}"\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[wechat]\napp_id = "{wechat.app_id}"\napp_secret = "{secret}"\n'
        f'api_base_url = "{wechat.base_url}"\n'
        f'[telegram]\nbot_token = "{TOKEN}"\nbase_url = "{telegram.base_url}"\n'
        f'[media]\ndir = "{tmp_path / "media"}"\n' + extra,
        "utf-8",
    )
    return path


def _lines(out: str) -> dict[str, list[str]]:
    """The report's lines by status, white space folded ("name said")."""
    found: dict[str, list[str]] = {}
    for line in out.splitlines()[:-1]:
        status, rest = line.split(maxsplit=1)
        found.setdefault(status, []).append(" ".join(rest.split()))
    return found


async def test_a_deployment_in_order_passes(
    tmp_path: Path,
    database_url: str,
    fakes: tuple[FakeWeChatAPI, FakeBotAPI],
    capsys: pytest.CaptureFixture[str],
) -> None:
    wechat, telegram = fakes
    telegram.webhook = {"url": f"{PUBLIC}/telegram"}
    config = _config(tmp_path, database_url, wechat, telegram)
    assert await run(["--config", str(config), "doctor"], env={}) == 0
    out = capsys.readouterr().out
    lines = _lines(out)
    assert "FAIL" not in lines, out
    ok = lines["ok"]
    assert "wechat app wx0000000000000001: an access token was issued" in ok
    assert any(line.endswith(f"it must be {PUBLIC}/wechat") for line in ok)
    assert "telegram @mashangyi_test_bot" in ok
    assert f"telegram webhook {PUBLIC}/telegram, 0 updates waiting" in ok
    assert {line.split()[0] for line in ok} >= {"database", "migrations", "redis", "media"}
    assert [r.path for r in wechat.requests][-1] == "cgi-bin/callback/check"


async def test_each_fault_is_named_with_what_to_do(
    tmp_path: Path,
    fakes: tuple[FakeWeChatAPI, FakeBotAPI],
    capsys: pytest.CaptureFixture[str],
) -> None:
    wechat, telegram = fakes
    telegram.webhook = {"url": "https://old.example.org/telegram"}
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await upgrade(url, "0014")
    (tmp_path / "media").write_text("a file where the media directory should be")
    config = _config(
        tmp_path,
        url,
        wechat,
        telegram,
        public="http://192.168.1.20:8080",
        secret="wrong",
        extra='[redis]\nurl = "redis://127.0.0.1:1/0"\n',
    )
    assert await run(["--config", str(config), "doctor"], env={}) == 1
    out = capsys.readouterr().out
    failed = "\n".join(_lines(out)["FAIL"])
    assert "schema at 0014, this code needs" in failed and "mashangyi db upgrade" in failed
    assert "redis.url does not answer" in failed
    assert "server.public_base_url is http://192.168.1.20:8080: WeChat and Telegram" in failed
    assert "no access token for wx0000000000000001" in failed and "40125" in failed
    assert "points at https://old.example.org/telegram, not" in failed
    assert "mashangyi telegram set-webhook" in failed
    assert "cannot write in" in failed
    assert out.splitlines()[-1].startswith("6 failed")


async def test_a_token_telegram_refuses(
    tmp_path: Path,
    database_url: str,
    fakes: tuple[FakeWeChatAPI, FakeBotAPI],
    capsys: pytest.CaptureFixture[str],
) -> None:
    wechat, telegram = fakes
    config = _config(tmp_path, database_url, wechat, telegram)
    config.write_text(config.read_text().replace(TOKEN, "999:not-the-token"), "utf-8")
    assert await run(["--config", str(config), "doctor"], env={}) == 1
    out = capsys.readouterr().out
    assert "telegram.bot_token: the Bot API rejects this token" in out
    assert "warn  telegram webhook" not in out


async def test_a_configuration_serve_would_refuse_is_named(
    tmp_path: Path,
    database_url: str,
    fakes: tuple[FakeWeChatAPI, FakeBotAPI],
    capsys: pytest.CaptureFixture[str],
) -> None:
    wechat, telegram = fakes
    config = _config(tmp_path, database_url, wechat, telegram)
    config.write_text(config.read_text().replace(f'secret_key = "{"k" * 32}"\n', ""), "utf-8")
    assert await run(["--config", str(config), "doctor"], env={}) == 1
    assert capsys.readouterr().out.startswith("FAIL  config  server.secret_key: required when")
