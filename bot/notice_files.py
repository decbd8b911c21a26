"""A topic's printable notice (notices/printable.py) as files: the PNG and the PDF, for
``mashangyi notice``, the public page's download links and the convener's chat.

Rendering takes about a second (the PDF embeds a subset of the CJK font), so it runs in a
thread, off the event loop, and each result is kept in the media store under the topic's
version: asked again, it is read back; once the topic changes, it is made afresh.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from sqlmodel import select

from bot.poster import FontError, PosterFont, find_font
from bot.services import Services
from notices.printable import RESULT_STATES, NoNotice, Notice, notice_for, render_pdf, render_png
from storage.models import Topic


@dataclass(frozen=True)
class NoticeFiles:
    notice: Notice
    png: bytes
    pdf: bytes


def default_kind(topic: Topic) -> str:
    """The results' notice once they are published, else the topic's."""
    return "results" if topic.state in RESULT_STATES and topic.results_published_at else "topic"


def notice_font(services: Services) -> PosterFont:
    """The posters' font (``poster.font``, else the one installed with the dependencies)."""
    setting = services.config.poster.font
    return find_font(services.config.base_dir / setting if setting else None)


async def notice_files(services: Services, number: str, kind: str | None = None) -> NoticeFiles:
    """The files of topic ``number``'s notice of ``kind`` (default: ``default_kind``);
    ``NoNotice`` when it has none, ``FontError`` without a CJK font."""
    async with services.sessions() as session:
        topic = (await session.exec(select(Topic).where(Topic.number == number))).first()
        if topic is None:
            raise NoNotice(number)
        notice = await notice_for(
            session, topic, kind or default_kind(topic), services.config.server.public_base_url
        )
        version = topic.version
    key = f"notices/{notice.filename}-v{version}"
    store = services.media_store
    try:
        return NoticeFiles(notice, await store.get(f"{key}.png"), await store.get(f"{key}.pdf"))
    except (FileNotFoundError, KeyError):
        pass
    font = notice_font(services)
    png, pdf = await asyncio.to_thread(_render, notice, font)
    await store.put(f"{key}.png", png)
    await store.put(f"{key}.pdf", pdf)
    return NoticeFiles(notice, png, pdf)


def _render(notice: Notice, font: PosterFont) -> tuple[bytes, bytes]:
    image = render_png(notice, font.path, font.index)
    out = io.BytesIO()
    image.save(out, "PNG", dpi=(200, 200), optimize=True)
    return out.getvalue(), render_pdf(notice, font.path, font.index)


__all__ = ["FontError", "NoNotice", "NoticeFiles", "default_kind", "notice_files"]
