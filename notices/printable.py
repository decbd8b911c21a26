"""Printable notices (公示) for the village notice board (000 §12): a publicized topic, or
its published results, on one A4 page as PNG and as PDF, with a QR code to its public page.

``notice_for`` reads what may be shown (never the submitter, their phone or location);
``render_png`` draws it with Pillow, ``render_pdf`` writes it with fpdf2 as real text (so
it can be searched, read aloud and checked), the font embedded. Both lay out the same
``Notice``. Every Chinese word is in ``zh_CN.toml`` [notice]. The caller gives the font
(bot/poster.find_font: the Noto Sans SC installed with the dependencies, or ``poster.font``).
"""

from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from sqlmodel.ext.asyncio.session import AsyncSession

from notices.drawing import qr_image, wrap
from storage.models import Room, Topic
from workflow.clock import CHINA
from workflow.lifecycle import RESULT_STATES, public_url
from workflow.rooms import room_chain
from workflow.texts import Catalogue

SAY = Catalogue(Path(__file__).with_name("zh_CN.toml"))

#: What a notice is of: the topic publicized (码上建议) or its results (码上查情).
KINDS = ("topic", "results")
#: A4 at 200 dpi, as the posters.
PAGE = (1654, 2339)
#: What one page holds of a long text; the QR code leads to the whole of it.
LONG_TEXT = 350
RED, INK, GREY, WHITE = (200, 16, 46), (34, 34, 34), (90, 90, 90), (255, 255, 255)


#: A notice's file in the media store: per topic version, so a topic that changed gets a
#: new one and an unchanged one is drawn once (bot/notice_files.py keeps them).
_FILE_KEY = re.compile(r"notices/(?P<number>.+)-(?P<kind>topic|results)-v\d+\.(png|pdf)")


def file_key(number: str, kind: str, version: int, suffix: str) -> str:
    """Where the ``suffix`` (png, pdf) file of topic ``number``'s notice of ``kind`` is kept
    while the topic is at ``version``."""
    return f"notices/{number}-{kind}-v{version}.{suffix}"


def file_of(key: str) -> tuple[str, str] | None:
    """The topic number and notice kind a ``file_key`` names; None for another key."""
    found = _FILE_KEY.fullmatch(key)
    return (found["number"], found["kind"]) if found else None


def file_name(number: str, kind: str, suffix: str) -> str:
    """The name a person sees on the file in their chat."""
    return SAY.text("notice", f"file_{kind}", number=number) + f".{suffix}"


class NoNotice(Exception):
    """The topic has no notice of that kind (not public, or no results published yet)."""


@dataclass(frozen=True)
class Notice:
    kind: str
    number: str
    title: str
    room: str  # the room, and its town when it has one
    url: str  # the topic's public page, in the QR code
    #: (label, value) lines: numbers, dates, implementer…
    facts: tuple[tuple[str, str], ...] = ()
    #: (heading, text) paragraphs: the background, or the consensus and the measures.
    sections: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def heading(self) -> str:
        return SAY.text("notice", f"heading_{self.kind}")

    @property
    def filename(self) -> str:
        """``<number>-topic`` / ``<number>-results``, without the suffix."""
        return f"{self.number}-{self.kind}"


def _day(moment: datetime | date | str | None) -> str:
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        moment = date.fromisoformat(moment[:10])
    if isinstance(moment, datetime):
        moment = moment.astimezone(CHINA).date()
    return SAY.text("notice", "day", year=moment.year, month=moment.month, day=moment.day)


def _short(text: str, limit: int = LONG_TEXT) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…" + SAY.text("notice", "more_online")


async def notice_for(session: AsyncSession, topic: Topic, kind: str, base_url: str) -> Notice:
    """The notice of ``kind`` for ``topic``; ``NoNotice`` if it has none (yet)."""
    url = public_url(base_url, topic.number, topic.state)
    if kind not in KINDS or not url or topic.published_at is None:
        raise NoNotice(kind)
    if kind == "results" and (topic.state not in RESULT_STATES or not topic.results_published_at):
        raise NoNotice(kind)
    chain = await room_chain(session, topic.room_id)
    room: Room = chain[0]
    town = chain[1].name if len(chain) > 1 and chain[1].level != "city" else ""
    where = f"{town} · {room.name}" if town and town != room.name else room.name
    label = SAY.sections["notice"]
    facts = [(label["number"], topic.number), (label["room"], where)]
    if kind == "topic":
        publish = topic.facts.get("publish", {})
        facts.append((label["published"], _day(topic.published_at)))
        if publish.get("suggestions_close"):
            facts.append((label["suggestions_close"], _day(publish["suggestions_close"])))
        sections = [(label["background"], _short(topic.background or label["no_background"]))]
        footer = label["scan_topic"]
    else:
        outcome = topic.facts.get("approve_outcome", {})
        meeting = topic.facts.get("record_meeting", {})
        facts += [
            (label["results_published"], _day(topic.results_published_at)),
            (label["implementer"], str(outcome.get("implementer", ""))),
            (label["due"], _day(outcome.get("due"))),
        ]
        sections = [
            # Two texts share the page.
            (label["consensus"], _short(str(meeting.get("consensus", "")), LONG_TEXT // 2)),
            (label["measures"], _short(str(outcome.get("measures", "")), LONG_TEXT // 2)),
        ]
        footer = label["scan_results"]
    sections.append(("", footer))
    return Notice(
        kind=kind,
        number=topic.number,
        title=topic.title,
        room=where,
        url=url,
        facts=tuple((k, v) for k, v in facts if v),
        sections=tuple((h, t) for h, t in sections if t),
    )


def render_png(notice: Notice, font: Path, index: int = 0) -> Image.Image:
    """The notice on one A4 page (RGB), large type for a notice board."""
    width, height = PAGE
    margin, text_width = 120, PAGE[0] - 240
    page = Image.new("RGB", PAGE, WHITE)
    draw = ImageDraw.Draw(page)

    def face(size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(str(font), size, index=index)

    draw.rectangle((0, 0, width, 260), fill=RED)
    draw.text((width // 2, 60), notice.heading, font=face(110), fill=WHITE, anchor="ma")
    y = 320
    for line in wrap(draw, notice.title, face(76), text_width):
        draw.text((margin, y), line, font=face(76), fill=INK, stroke_width=1, stroke_fill=INK)
        y += 100
    y += 20
    body, small = face(46), face(40)
    for key, value in notice.facts:
        for n, line in enumerate(wrap(draw, f"{key}：{value}", body, text_width)):
            draw.text((margin, y), line, font=body, fill=INK if n == 0 else GREY)
            y += 64
    qr_size = 520
    bottom = height - qr_size - 200  # the QR code and its caption keep the foot of the page
    *sections, (_, invitation) = notice.sections  # the last: what the QR code is for
    for heading, text in sections:
        if heading:
            y += 24
            draw.text((margin, y), heading, font=body, fill=RED, stroke_width=1, stroke_fill=RED)
            y += 70
        for line in wrap(draw, text, small, text_width):
            if y > bottom:
                break
            draw.text((margin, y), line, font=small, fill=INK)
            y += 58
    code = qr_image(notice.url, qr_size)
    top = height - code.height - 150
    draw.text((width // 2, top - 70), invitation, font=body, fill=RED, anchor="ma")
    page.paste(code, ((width - code.width) // 2, top))
    draw.text((width // 2, top + code.height + 20), notice.url, font=small, fill=GREY, anchor="ma")
    return page


def truetype_subset(font: Path, index: int, text: str) -> bytes:
    """The glyphs of ``text`` (and .notdef) of ``font`` as a small TrueType font.

    fpdf2 embeds a CFF-outline font (the Noto Sans SC we ship is one) with an ``/Encoding``
    CMap that text extractors do not read (pypdf gives NULs, pdfminer nothing); a TrueType
    font it embeds as ``Identity-H``, which every reader handles. So the outlines are
    converted to quadratic curves (fontTools' otf2ttf recipe), for these few glyphs only.
    """
    # Imported here: they take a second to import, and only printing needs them (every
    # command and every process would pay for it otherwise).
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.subset import Options, Subsetter
    from fontTools.ttLib import TTFont, newTable

    face = TTFont(str(font), fontNumber=index)
    options = Options()
    options.notdef_outline = True
    options.glyph_names = True
    subsetter = Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(face)
    if "CFF " in face:
        order, glyphs = face.getGlyphOrder(), face.getGlyphSet()
        glyf = newTable("glyf")
        glyf.glyphOrder, glyf.glyphs = order, {}
        for name in order:
            pen = TTGlyphPen(glyphs)
            glyphs[name].draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
            glyf[name] = pen.glyph()
        face["glyf"], face["loca"] = glyf, newTable("loca")
        for table in ("CFF ", "VORG"):
            if table in face:
                del face[table]
        maxp = face["maxp"]
        maxp.tableVersion = 0x00010000
        for name in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs",
                     "maxInstructionDefs", "maxStackElements", "maxSizeOfInstructions",
                     "maxComponentElements"):  # fmt: skip
            setattr(maxp, name, 0)
        maxp.maxZones = 1
        face["head"].glyphDataFormat = 0
        post = face["post"]
        post.formatType, post.extraNames, post.mapping = 2.0, [], {}
        face.sfntVersion = "\x00\x01\x00\x00"
    out = io.BytesIO()
    face.save(out)
    return out.getvalue()


def render_pdf(notice: Notice, font: Path, index: int = 0) -> bytes:
    """The notice as an A4 PDF whose text is text (the glyphs it uses embedded), on one
    page: a long one is set in smaller type, down to 10 pt, rather than run onto a second."""
    every = "".join(
        [notice.heading, notice.title, notice.url, "：…"]
        + [k + v for k, v in notice.facts]
        + [h + t for h, t in notice.sections]
    )
    with tempfile.TemporaryDirectory() as folder:  # fpdf2 reads fonts from files only
        subset = Path(folder) / "notice.ttf"
        subset.write_bytes(truetype_subset(font, index, every))
        for body in (14, 12, 11, 10):
            pdf = _pdf_page(notice, subset, body)
            if pdf.page_no() == 1:
                break
        return bytes(pdf.output())


def _pdf_page(notice: Notice, subset: Path, body: int) -> Any:
    from fpdf import FPDF  # see truetype_subset
    from fpdf.enums import WrapMode

    pdf = FPDF(format="A4")
    pdf.set_margins(15, 15)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(f"{notice.heading} {notice.number}")
    pdf.add_page()
    pdf.add_font("cjk", fname=subset)

    def lines(text: str, size: int, height: float) -> None:
        pdf.set_font("cjk", size=size)
        pdf.multi_cell(180, height, text, new_x="LMARGIN", new_y="NEXT", wrapmode=WrapMode.CHAR)

    pdf.set_fill_color(*RED)
    pdf.rect(0, 0, 210, 32, style="F")
    pdf.set_text_color(*WHITE)
    pdf.set_font("cjk", size=30)
    pdf.set_xy(0, 9)
    pdf.cell(210, 14, notice.heading, align="C")
    pdf.set_text_color(*INK)
    pdf.set_xy(15, 40)
    lines(notice.title, 22, 11)
    pdf.ln(3)
    for key, value in notice.facts:
        lines(f"{key}：{value}", body + 2, body * 0.64)
    for heading, text in notice.sections:
        pdf.ln(3)
        if heading:
            pdf.set_text_color(*RED)
            lines(heading, body + 2, body * 0.64)
            pdf.set_text_color(*INK)
        lines(text, body, body * 0.57)
    if pdf.get_y() > 297 - 15 - 75:  # no room for the QR code: a second page (or smaller type)
        pdf.add_page()
    pdf.image(
        qr_image(notice.url, 600).convert("RGB"), x=(210 - 60) / 2, y=297 - 15 - 72, w=60, h=60
    )
    pdf.set_xy(15, 297 - 15 - 10)
    pdf.set_font("cjk", size=10)
    pdf.set_text_color(*GREY)
    pdf.cell(180, 6, notice.url, align="C")
    return pdf
