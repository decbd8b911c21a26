"""Where media files live: the photos, recordings and files residents send, and the notices
and calendar files we draw. One interface (``MediaStore``), two places: a local directory
(the default, the demo) or an S3-compatible bucket, which several hosts can share
(``[media] backend = "s3"``, ``bot/media_s3.py``). Keys are relative paths
("2026/12/41-ab12cd34.jpg").

What is kept is judged by its bytes (``admit``): the platform's or the sender's word for a
file's type is not trusted, because the type decides how our pages serve it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import filetype

from bot.config import Config

#: What may be kept, per attachment kind, as the bytes show it. Photos are what the pages
#: show as images; recordings what WeChat (AMR, Speex aside) and Telegram (Ogg/Opus) send;
#: files what a department's findings or minutes usually come in.
ALLOWED: dict[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/heic"}),
    "voice": frozenset(
        {"audio/amr", "audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/x-wav"}
    ),
    "video": frozenset({"video/mp4", "video/quicktime", "video/3gpp"}),
    "file": frozenset(
        {
            "application/pdf",
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/vnd.oasis.opendocument.text",
            "application/vnd.oasis.opendocument.spreadsheet",
            "image/jpeg",
            "image/png",
        }
    ),
}
#: Plain text has no magic number: a file declared as one of these is kept when it is UTF-8.
TEXT_TYPES = frozenset({"text/plain", "text/csv"})
#: WeChat's high-definition voice (``.speex``) has no magic number filetype knows.
SPEEX = "audio/speex"


class MediaMissing(FileNotFoundError):
    """No file under that key (a FileNotFoundError, as the local store raises)."""


class MediaStoreError(OSError):
    """The store could not be reached or refused the operation (temporary: try later)."""


class Refused(ValueError):
    """The bytes are not a kind of file we keep; permanent (trying again gives the same)."""


class MediaStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; raises ``MediaMissing`` when there are none."""
        ...

    async def delete(self, key: str) -> None: ...

    def describe(self) -> str:
        """Where the files are, for people (doctor, logs)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Admitted:
    content_type: str


def admit(kind: str, data: bytes, declared: str) -> Admitted:
    """The content type to keep ``data`` under, judged by its bytes; ``Refused`` when it is
    not a type we keep for ``kind`` (an attachment kind: image, voice, video, file)."""
    declared = declared.split(";")[0].strip().lower()
    allowed = ALLOWED.get(kind, ALLOWED["file"])
    sniffed = filetype.guess_mime(data)
    if sniffed is not None:
        if sniffed in allowed:
            return Admitted(sniffed)
        raise Refused(f"a {sniffed} file is not kept as {kind}")
    if kind == "voice" and declared == SPEEX:
        return Admitted(SPEEX)
    if kind == "file" and declared in TEXT_TYPES:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(f"declared {declared} but not UTF-8 text") from None
        return Admitted(f"{declared}; charset=utf-8")
    raise Refused(f"unrecognised bytes (declared {declared or 'nothing'}) are not kept as {kind}")


class LocalMediaStore:
    """Files under one directory. A file is written under a temporary name and renamed, so
    a reader never sees half of one."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, key: str, data: bytes, content_type: str = "") -> None:
        await asyncio.to_thread(_write, self._path(key), data)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            raise MediaMissing(key) from None

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)

    def path(self, key: str) -> Path:
        return self._path(key)

    def describe(self) -> str:
        return str(self.root)

    async def close(self) -> None:
        return None

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise MediaMissing(key)  # keys are ours, but a stored one must never escape
        return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()  # a full disk leaves no half-written file behind


def build_media_store(config: Config) -> MediaStore:
    media = config.media
    if media.backend == "s3":
        # Imported here: aiobotocore takes about a second to import, which every CLI
        # command would pay otherwise.
        from bot.media_s3 import S3MediaStore

        return S3MediaStore(
            bucket=media.s3_bucket,
            endpoint_url=media.s3_endpoint_url,
            region=media.s3_region,
            prefix=media.s3_prefix,
            access_key_id=media.s3_access_key_id,
            secret_access_key=media.s3_secret_access_key.get_secret_value(),
        )
    return LocalMediaStore(config.media_dir())
