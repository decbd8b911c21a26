"""deploy/backup.sh and deploy/restore.sh (the runbook's backup and restore): a restored
database and media directory give back a working service with the same topics and files."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.cli import run

ROOT = Path(__file__).resolve().parent.parent


def _libpq(url: str, database: str) -> str:
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://"))
    return parts._replace(path=f"/{database}").geturl()


async def _sh(*command: str) -> None:
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.postgres_only("pg_dump and pg_restore")
async def test_a_restore_brings_back_a_working_service(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    restored_name = f"{name}_restored"
    admin = _libpq(database_url, "postgres")
    await _sh("psql", admin, "-qc", f"DROP DATABASE IF EXISTS {restored_name}")
    await _sh("psql", admin, "-qc", f"CREATE DATABASE {restored_name}")
    media = tmp_path / "media"
    config = tmp_path / "live.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n[media]\ndir = "{media}"\n', "utf-8")
    assert await run(["--config", str(config), "demo"], env={}) == 0
    (media / "ab").mkdir(parents=True)
    (media / "ab" / "photo.jpg").write_bytes(b"\xff\xd8 a resident's photo")
    capsys.readouterr()
    assert await run(["--config", str(config), "topics", "list"], env={}) == 0
    before = capsys.readouterr().out
    assert "topics" in before.splitlines()[-1]

    backup = tmp_path / "backup"
    await _sh(
        str(ROOT / "deploy" / "backup.sh"), _libpq(database_url, name), str(media), str(backup)
    )
    restored_media = tmp_path / "restored-media"
    await _sh(
        str(ROOT / "deploy" / "restore.sh"),
        _libpq(database_url, restored_name),
        str(restored_media),
        str(backup),
    )
    restored_url = database_url.rsplit("/", 1)[0] + f"/{restored_name}"
    restored = tmp_path / "restored.toml"
    restored.write_text(
        f'[database]\nurl = "{restored_url}"\n[media]\ndir = "{restored_media}"\n', "utf-8"
    )
    try:
        assert await run(["--config", str(restored), "topics", "list"], env={}) == 0
        assert capsys.readouterr().out == before
        assert await run(["--config", str(restored), "doctor"], env={}) == 0
        report = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
        assert any(line.startswith("ok migrations schema at") for line in report), report
        assert (restored_media / "ab" / "photo.jpg").read_bytes() == b"\xff\xd8 a resident's photo"
    finally:
        await _sh("psql", admin, "-qc", f"DROP DATABASE IF EXISTS {restored_name} WITH (FORCE)")
