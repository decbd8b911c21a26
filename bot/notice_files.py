"""A topic's printable notice (notices/printable.py) as files, the PNG and the PDF, for
``mashangyi notice``, the public page's download links and the convener's chat (the outbox
senders read them through ``NoticeStore.read``, a ``notices.message.Files``); and a
meeting's calendar file for a registered participant's chat, made on its first send.

Rendering takes about a second (the PDF embeds a subset of the CJK font), so it runs in a
thread, off the event loop, and each result is kept in the media store under the topic's
version (``notices.printable.file_key``): asked again, it is read back; once the topic
changes, it is made afresh.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from bot.media_store import LocalMediaStore, MediaStore
from bot.poster import FontError, PosterFont, find_font
from notices.calendar_file import meeting_ics
from notices.message import FileRef
from notices.outbox import PermanentFailure, TemporaryFailure
from notices.printable import (
    RESULT_STATES,
    NoNotice,
    Notice,
    file_key,
    file_of,
    notice_for,
    render_pdf,
    render_png,
)
from storage.db import SessionFactory
from storage.models import Topic
from workflow.clock import Clock, SystemClock
from workflow.meetings import find_meeting, ics_of


@dataclass(frozen=True)
class NoticeFiles:
    notice: Notice
    png: bytes
    pdf: bytes
    #: The topic's version they were drawn for (the ``file_key`` they are kept under).
    version: int = 0


def default_kind(topic: Topic) -> str:
    """The results' notice once they are published, else the topic's."""
    return "results" if topic.state in RESULT_STATES and topic.results_published_at else "topic"


class NoticeStore:
    """The notices' files, drawn once per topic version and kept in the media store."""

    def __init__(
        self,
        sessions: SessionFactory,
        store: MediaStore,
        public_base_url: str,
        font: Path | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.sessions = sessions
        self.store = store
        self.public_base_url = public_base_url
        #: ``poster.font`` (resolved), else the font installed with the dependencies.
        self.font = font

    async def files(self, number: str, kind: str | None = None) -> NoticeFiles:
        """The files of topic ``number``'s notice of ``kind`` (default: ``default_kind``);
        ``NoNotice`` when it has none, ``FontError`` without a CJK font."""
        async with self.sessions() as session:
            topic = (await session.exec(select(Topic).where(Topic.number == number))).first()
            if topic is None:
                raise NoNotice(number)
            notice = await notice_for(
                session, topic, kind or default_kind(topic), self.public_base_url
            )
            version = topic.version
        png_key, pdf_key = (file_key(number, notice.kind, version, s) for s in ("png", "pdf"))
        try:
            png, pdf = await self.store.get(png_key), await self.store.get(pdf_key)
            return NoticeFiles(notice, png, pdf, version)
        except (FileNotFoundError, KeyError):
            pass
        png, pdf = await asyncio.to_thread(_render, notice, find_font(self.font))
        await self.store.put(png_key, png, "image/png")
        await self.store.put(pdf_key, pdf, "application/pdf")
        return NoticeFiles(notice, png, pdf, version)

    async def read(self, ref: FileRef) -> bytes:
        """A notice's file for a sender: as kept under ``ref.key``; when the store lost it,
        drawn again (the topic's notice as it is now). Failures are the outbox's: a notice
        that is no more (or a key of no notice) is permanent, a missing font temporary."""
        try:
            return await self.store.get(ref.key)
        except (FileNotFoundError, KeyError):
            pass
        named = file_of(ref.key)
        if named is None and (code := ics_of(ref.key)) is not None:
            return await self._meeting_ics(ref.key, code)
        if named is None:
            raise PermanentFailure(f"file {ref.key} is not in the media store")
        number, kind = named
        try:
            files = await self.files(number, kind)
        except NoNotice:
            raise PermanentFailure(f"topic {number} has no {kind} notice any more") from None
        except FontError as exc:
            raise TemporaryFailure(f"cannot draw the notice: {exc}") from exc
        return files.pdf if ref.key.endswith(".pdf") else files.png

    async def _meeting_ics(self, key: str, code: str) -> bytes:
        """A meeting's calendar file, made on its first send (as the page serves it)."""
        async with self.sessions() as session:
            meeting = await find_meeting(session, code)
            topic = await session.get(Topic, meeting.topic_id) if meeting else None
        if meeting is None or topic is None:
            raise PermanentFailure(f"no meeting {code}")
        page = f"{self.public_base_url.rstrip('/')}/m/{code}"
        data = meeting_ics(meeting, topic, page, self.clock.now())
        await self.store.put(key, data, "text/calendar")
        return data

    async def path(self, ref: FileRef) -> Path:
        """Where the file is on disk (the console shows it), made first if need be; with a
        bucket for a store, a copy in the temporary directory."""
        if isinstance(self.store, LocalMediaStore):
            target = self.store.path(ref.key)
            if not target.exists():
                await self.store.put(ref.key, await self.read(ref))
            return target
        target = Path(tempfile.gettempdir()) / "mashangyi-files" / ref.key
        await asyncio.to_thread(_copy_to, target, await self.read(ref))
        return target


def _copy_to(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _render(notice: Notice, font: PosterFont) -> tuple[bytes, bytes]:
    image = render_png(notice, font.path, font.index)
    out = io.BytesIO()
    image.save(out, "PNG", dpi=(200, 200), optimize=True)
    return out.getvalue(), render_pdf(notice, font.path, font.index)


__all__ = ["FontError", "NoNotice", "NoticeFiles", "NoticeStore", "default_kind"]
