"""The media store behind one interface (issue 14, item 7): a local directory or an
S3-compatible bucket (moto's server at HTTP on loopback), what residents upload judged by
its bytes, and a store that fails (a full disk, the bucket away) losing nothing."""

from __future__ import annotations

import errno
import io
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.cli import run
from bot.config import ConfigError, load_config
from bot.media import STORE_RETRY
from bot.media_s3 import S3MediaStore
from bot.media_store import (
    LocalMediaStore,
    MediaMissing,
    MediaStoreError,
    Refused,
    admit,
)
from bot.services import Services, build_services
from bot.telegram import close_outbound
from bot.web import create_app
from storage.db import make_session_factory, transaction
from storage.models import Attachment
from tests.fakes.s3 import KEY_ID, REGION, SECRET, FakeS3
from tests.fakes.telegram_api import TOKEN, FakeBotAPI
from tests.public_seed import PNG, seed
from workflow.clock import FixedClock


def picture(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(out, kind)
    return out.getvalue()


JPEG = picture("JPEG")
AMR = b"#!AMR\n" + bytes(64)
OGG = b"OggS\x00\x02" + bytes(64)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
HTML = b"<!doctype html><script>alert(document.cookie)</script>"
ELF = b"\x7fELF\x02\x01\x01" + bytes(64)


@pytest.fixture
def s3() -> Iterator[FakeS3]:
    fake = FakeS3()
    fake.start()
    yield fake
    fake.stop()


def bucket_store(s3: FakeS3, **kw: object) -> S3MediaStore:
    options: dict[str, object] = {
        "bucket": s3.bucket,
        "endpoint_url": s3.endpoint_url,
        "region": REGION,
        "access_key_id": KEY_ID,
        "secret_access_key": SECRET,
        "timeout_seconds": 2.0,
    } | kw
    return S3MediaStore(**options)  # type: ignore[arg-type]


# -- what is kept ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "declared", "kept"),
    [
        ("image", JPEG, "image/jpeg", "image/jpeg"),
        ("image", PNG, "image/jpeg", "image/png"),  # the bytes, not the platform's word
        ("image", picture("WEBP"), "application/octet-stream", "image/webp"),
        ("voice", AMR, "audio/amr", "audio/amr"),
        ("voice", OGG, "", "audio/ogg"),
        ("voice", b"Speex   " + bytes(40), "audio/speex", "audio/speex"),
        ("file", PDF, "application/octet-stream", "application/pdf"),
        ("file", "调研纪要：走访32户".encode(), "text/plain", "text/plain; charset=utf-8"),
    ],
)
def test_what_a_kind_may_be_is_kept_under_the_type_its_bytes_show(
    kind: str, data: bytes, declared: str, kept: str
) -> None:
    assert admit(kind, data, declared).content_type == kept


@pytest.mark.parametrize(
    ("kind", "data", "declared"),
    [
        ("image", HTML, "image/jpeg"),  # a page dressed as a photo would run on our domain
        ("image", PDF, "image/jpeg"),
        ("image", AMR, "image/png"),
        ("voice", JPEG, "audio/amr"),
        ("voice", b"just some bytes", "audio/amr"),
        ("file", ELF, "application/pdf"),
        ("file", HTML, "text/html"),
        ("file", "调研".encode("gb18030"), "text/plain"),  # not UTF-8
        ("file", b"", "application/pdf"),
    ],
)
def test_anything_else_is_refused(kind: str, data: bytes, declared: str) -> None:
    with pytest.raises(Refused):
        admit(kind, data, declared)


# -- the local directory -----------------------------------------------------------------


async def test_the_local_store_keeps_reads_and_forgets(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    await store.put("2026/12/1-ab.jpg", JPEG, "image/jpeg")
    assert await store.get("2026/12/1-ab.jpg") == JPEG
    await store.delete("2026/12/1-ab.jpg")
    await store.delete("2026/12/1-ab.jpg")  # twice is no error
    with pytest.raises(MediaMissing):
        await store.get("2026/12/1-ab.jpg")
    with pytest.raises(FileNotFoundError):  # what callers that predate the store catch
        await store.get("never")
    with pytest.raises(MediaMissing):  # a key never reaches outside the directory
        await store.get("../../etc/passwd")


async def test_a_full_disk_leaves_no_half_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalMediaStore(tmp_path / "media")
    real = Path.write_bytes

    def half_then_full(self: Path, data: bytes) -> int:  # type: ignore[override]
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError, match="No space"):
        await store.put("2026/12/2-cd.jpg", JPEG)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "media").rglob("*") if p.is_file()] == []
    with pytest.raises(MediaMissing):
        await store.get("2026/12/2-cd.jpg")


# -- the bucket --------------------------------------------------------------------------


async def test_the_bucket_keeps_reads_and_forgets_over_http(s3: FakeS3) -> None:
    store = bucket_store(s3, prefix="huaian/")
    try:
        await store.put("2026/12/1-ab.jpg", JPEG, "image/jpeg")
        assert s3.objects() == {"huaian/2026/12/1-ab.jpg": (JPEG, "image/jpeg")}
        assert await store.get("2026/12/1-ab.jpg") == JPEG
        with pytest.raises(MediaMissing):
            await store.get("2026/12/none.jpg")
        await store.delete("2026/12/1-ab.jpg")
        assert s3.objects() == {}
        assert store.describe() == f"s3://{s3.bucket}/huaian/ at {s3.endpoint_url}"
    finally:
        await store.close()


async def test_a_bucket_that_is_not_there_or_not_answering_is_a_store_error(
    s3: FakeS3,
) -> None:
    missing = bucket_store(s3, bucket="no-such-bucket")
    try:
        with pytest.raises(MediaStoreError):
            await missing.put("k", b"x", "text/plain")
        with pytest.raises(MediaStoreError):  # not "missing": the file may well exist
            await missing.get("k")
    finally:
        await missing.close()
    away = bucket_store(s3, endpoint_url="http://127.0.0.1:1", timeout_seconds=0.5)
    try:
        with pytest.raises(MediaStoreError):
            await away.put("k", b"x", "text/plain")
    finally:
        await away.close()


def test_the_s3_backend_needs_a_bucket(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[media]\nbackend = "s3"\n', "utf-8")
    with pytest.raises(ConfigError, match=r"media\.s3_bucket"):
        load_config(path, env={})
    path.write_text('[media]\nbackend = "ftp"\n', "utf-8")
    with pytest.raises(ConfigError, match=r"media\.backend"):
        load_config(path, env={})


# -- through the service: the downloader, the pages, doctor -------------------------------


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as api:
        yield api


def service_config(tmp_path: Path, database_url: str, bot_api: FakeBotAPI, media: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n'
        '[server]\npublic_base_url = "https://bot.example.org"\n'
        f'secret_key = "{"k" * 32}"\n'
        f'[telegram]\nbot_token = "{TOKEN}"\nbase_url = "{bot_api.base_url}"\n'
        'webhook_secret = "webhook-Secret_0123456789"\n' + media,
        "utf-8",
    )
    return path


async def pending(services: Services, file_id: str, kind: str = "image") -> int:
    """An attachment as a dialog leaves it: a platform reference, to be downloaded."""
    async with transaction(services.sessions) as session:
        row = Attachment(
            kind=kind,
            channel="telegram",
            source_ref=file_id,
            content_type="image/jpeg",
            created_at=services.clock.now(),
        )
        session.add(row)
        await session.flush()
        assert row.id is not None
        return row.id


async def attachment(services: Services, ident: int) -> Attachment:
    async with services.sessions() as session:
        row = await session.get(Attachment, ident)
    assert row is not None
    return row


async def test_downloads_land_in_the_bucket_judged_by_their_bytes(
    tmp_path: Path,
    database_url: str,
    engine: object,
    clock: FixedClock,
    bot_api: FakeBotAPI,
    s3: FakeS3,
) -> None:
    config = load_config(service_config(tmp_path, database_url, bot_api, s3.config()), env={})
    services = build_services(config, clock=clock)
    try:
        photo = await pending(services, "photo-1")
        disguised = await pending(services, "photo-2")
        bot_api.add_file("photo-1", PNG, "photos/file_1.jpg")  # Telegram says .jpg
        bot_api.add_file("photo-2", HTML, "photos/file_2.jpg")
        assert await services.media_downloader().run_once() == 1

        kept = await attachment(services, photo)
        assert (kept.status, kept.content_type) == ("stored", "image/png")
        assert s3.objects() == {kept.storage_key: (PNG, "image/png")}
        refused = await attachment(services, disguised)
        assert refused.status == "failed" and "Refused" in (refused.last_error or "")
        assert refused.storage_key == ""
        assert not (tmp_path / "var").exists()  # nothing went to the local directory
    finally:
        await close_outbound(services)
        await services.close()


async def test_a_store_that_fails_loses_nothing_and_counts_no_attempt(
    tmp_path: Path,
    database_url: str,
    engine: object,
    clock: FixedClock,
    bot_api: FakeBotAPI,
) -> None:
    media_dir = tmp_path / "media"
    media_dir.write_text("a file where the directory should be: every write fails")
    config = load_config(
        service_config(tmp_path, database_url, bot_api, f'[media]\ndir = "{media_dir}"\n'),
        env={},
    )
    services = build_services(config, clock=clock)
    try:
        ident = await pending(services, "photo-1")
        bot_api.add_file("photo-1", JPEG, "photos/file_1.jpg")
        downloader = services.media_downloader()
        for _ in range(8):  # more rounds than max_attempts: the store is not the platform
            assert await downloader.run_once() == 0
            clock.advance(STORE_RETRY)
        waiting = await attachment(services, ident)
        assert (waiting.status, waiting.attempts) == ("pending", 0)
        assert (waiting.last_error or "").startswith("store: ")
        assert waiting.not_before == clock.now()  # tried again every STORE_RETRY

        media_dir.unlink()  # the operator frees the disk
        assert await downloader.run_once() == 1
        kept = await attachment(services, ident)
        assert kept.status == "stored"
        assert (media_dir / kept.storage_key).read_bytes() == JPEG

        # Three days on, a store still failing gives up: WeChat's media are gone by then.
        late = await pending(services, "photo-1")
        media_dir.rename(tmp_path / "moved")
        media_dir.write_text("full again")
        clock.advance(timedelta(days=3, minutes=1))
        assert await downloader.run_once() == 0
        assert (await attachment(services, late)).status == "failed"
    finally:
        await close_outbound(services)
        await services.close()


async def test_public_photos_are_served_from_the_bucket(
    tmp_path: Path,
    database_url: str,
    engine: object,
    clock: FixedClock,
    bot_api: FakeBotAPI,
    s3: FakeS3,
) -> None:
    config = load_config(service_config(tmp_path, database_url, bot_api, s3.config()), env={})
    services = build_services(config, clock=clock)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    try:
        board = await seed(make_session_factory(engine), clock, services.media_store)
        await client.start_server()
        lamp = board.topics["lamp"].number
        response = await client.get(f"/t/{lamp}/photo/{board.photos['approved']}")
        assert response.status == 200 and await response.read() == PNG
        assert response.content_type == "image/png"
        assert response.headers["X-Content-Type-Options"] == "nosniff"

        # An object lost from the bucket is "not found", not a server error.
        s3.client().delete_object(Bucket=s3.bucket, Key="test/approved.png")
        response = await client.get(f"/t/{lamp}/photo/{board.photos['approved']}")
        assert response.status == 404
    finally:
        await client.close()
        await close_outbound(services)
        await services.close()


async def test_doctor_writes_into_the_store_it_is_given(
    tmp_path: Path,
    database_url: str,
    bot_api: FakeBotAPI,
    s3: FakeS3,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = service_config(tmp_path, database_url, bot_api, s3.config())
    await run(["--config", str(path), "doctor"], env={})
    out = capsys.readouterr().out
    assert f"s3://{s3.bucket}/ at {s3.endpoint_url} is writable" in out
    assert s3.objects() == {}  # its probe removed

    gone = s3.config().replace(f'"{s3.bucket}"', '"no-such-bucket"')
    path = service_config(tmp_path, database_url, bot_api, gone)
    assert await run(["--config", str(path), "doctor"], env={}) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if " media " in f" {line} "]
    assert line.split()[0] == "FAIL" and "cannot write in s3://no-such-bucket/" in line
