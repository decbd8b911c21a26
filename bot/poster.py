"""Printable room posters: the CJK font and the A4 page layout (QR codes and wrapping are
notices/drawing.py's, shared with the 公示 notices).

Every Chinese text on the poster comes from ``bot/zh_CN.toml`` [poster]. The font is found
in this order (``find_font``): the ``poster.font`` config key; the Noto Sans SC that the
project's dependencies install (``pylopdf-fonts-zh-cn``, SIL OFL 1.1); Debian's
fonts-noto-cjk / fonts-wqy-zenhei and a few other usual places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from notices.drawing import qr_image, wrap
from workflow.texts import Catalogue

SAY = Catalogue(Path(__file__).with_name("zh_CN.toml"))

#: A4 portrait at 200 dpi: QR modules come out 12+ pixels wide, plenty for print.
DPI = 200
PAGE = (1654, 2339)

#: Fonts with Chinese glyphs where Debian, macOS and Windows put them.
SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # fonts-noto-cjk
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)

RED = (200, 16, 46)
WECHAT_GREEN = (7, 150, 80)
TELEGRAM_BLUE = (34, 140, 200)
INK = (34, 34, 34)
GREY = (110, 110, 110)
WHITE = (255, 255, 255)
PALE = (250, 243, 236)


class FontError(Exception):
    """No usable font with Chinese glyphs; the message names the ``poster.font`` key."""


HINT = (
    "set poster.font (or MASHANGYI_POSTER_FONT) to a .ttf/.otf/.ttc file with Chinese "
    "glyphs, or run `python3 dev.py setup`, which installs Noto Sans SC"
)


@dataclass(frozen=True)
class PosterFont:
    path: Path
    index: int = 0  # the face inside a .ttc collection

    def at(self, size: int) -> ImageFont.FreeTypeFont:
        return _load(str(self.path), self.index, size)


@lru_cache(maxsize=64)
def _load(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=index)


def _has_chinese(path: Path, index: int) -> bool:
    """A font lacking 码 draws it as its .notdef glyph, as it does an unassigned code point
    (U+0378; not one of the default-ignorable ones, which are drawn as nothing)."""
    font = _load(str(path), index, 48)
    missing = font.getmask("\u0378")
    for char in "码议":
        mask = font.getmask(char)
        if mask.size == missing.size and bytes(mask) == bytes(missing):
            return False
    return True


def _faces(path: Path) -> list[int]:
    """Face indices to try, Simplified Chinese first (a Noto CJK .ttc starts with JP)."""
    if path.suffix.lower() not in (".ttc", ".otc"):
        return [0]
    names: list[tuple[int, str]] = []
    for index in range(16):
        try:
            family, _style = _load(str(path), index, 12).getname()
        except OSError:
            break
        names.append((index, family or ""))
    simplified = [i for i, name in names if any(t in name for t in (" SC", " CN", "Hans", " GB"))]
    return simplified + [i for i, _ in names if i not in simplified] or [0]


def _usable(path: Path) -> PosterFont | None:
    for index in _faces(path):
        try:
            if _has_chinese(path, index):
                return PosterFont(path, index)
        except OSError:
            return None
    return None


def packaged_font() -> Path | None:
    """The Noto Sans SC installed with the project's dependencies, if it is there."""
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        return None
    path = Path(pylopdf_fonts_zh_cn.sans_path())
    return path if path.is_file() else None


def find_font(
    configured: Path | None, system: Sequence[str] = SYSTEM_FONTS, *, packaged: bool = True
) -> PosterFont:
    """The font for posters; raises ``FontError`` naming ``poster.font`` when there is none.
    Unless configured, the one installed with the dependencies (``packaged``), then
    ``system``'s."""
    if configured is not None:
        if not configured.is_file():
            raise FontError(f"poster.font: no such file: {configured}")
        font = _usable(configured)
        if font is None:
            raise FontError(f"poster.font: {configured} is not a font with Chinese glyphs; {HINT}")
        return font
    installed = packaged_font() if packaged else None
    candidates = ([installed] if installed else []) + [Path(p) for p in system]
    for path in candidates:
        if path.is_file() and (font := _usable(path)):
            return font
    raise FontError(f"no font with Chinese glyphs found for the posters: {HINT}")


# -- the poster ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    caption: str
    data: str  # what the QR code encodes
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class PosterContent:
    room_code: str
    room_name: str
    town_name: str  # "" for a room without a parent
    codes: tuple[Code, ...] = field(default_factory=tuple)


def wechat_code(url: str) -> Code:
    return Code(SAY.text("poster", "wechat_caption"), url, WECHAT_GREEN)


def telegram_code(link: str) -> Code:
    return Code(SAY.text("poster", "telegram_caption"), link, TELEGRAM_BLUE)


def page_code(url: str) -> Code:
    """The room's public page: read by any phone's camera, WeChat or not."""
    return Code(SAY.text("poster", "page_caption"), url, RED)


def _title(
    draw: ImageDraw.ImageDraw, text: str, font: PosterFont, width: int
) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The room name as large as it fits: one line down to 84 px, then two lines, then
    as many lines as it takes at the smallest size."""
    for size in range(112, 55, -4):
        face = font.at(size)
        lines = wrap(draw, text, face, width)
        if len(lines) <= (1 if size >= 84 else 2):
            return face, lines
    return face, lines


def render_poster(content: PosterContent, font: PosterFont) -> Image.Image:
    """One A4 portrait page (``PAGE`` at ``DPI``), RGB."""
    width, height = PAGE
    centre = width // 2
    margin = 100
    page = Image.new("RGB", PAGE, WHITE)
    draw = ImageDraw.Draw(page)
    say = SAY.sections["poster"]

    # Banner: the “码”上议 mark and the slogan, white on red.
    banner = 380
    draw.rectangle((0, 0, width, banner), fill=RED)
    draw.text(
        (centre, 50), say["mark"], font=font.at(150), fill=WHITE, anchor="ma",
        stroke_width=3, stroke_fill=WHITE,
    )  # fmt: skip
    draw.text((centre, 270), say["slogan"], font=font.at(60), fill=WHITE, anchor="ma")

    # The room and its town.
    y = banner + 60
    face, lines = _title(draw, content.room_name, font, width - 2 * margin)
    for line in lines:
        draw.text(
            (centre, y), line, font=face, fill=INK, anchor="ma", stroke_width=2, stroke_fill=INK
        )
        y += int(face.size * 1.35)
    if content.town_name:
        draw.text((centre, y), content.town_name, font=font.at(60), fill=GREY, anchor="ma")
        y += 95
    y += 15
    draw.text((centre, y), say["invite"], font=font.at(54), fill=RED, anchor="ma")
    top = y + 100  # the codes start here

    # Footer: the room code (what a helper asks for on the phone) and the mark again.
    footer = height - 170
    draw.line((margin, footer, width - margin, footer), fill=RED, width=4)
    small = font.at(44)
    draw.text(
        (margin, footer + 45), SAY.text("poster", "room_code", code=content.room_code),
        font=small, fill=GREY,
    )  # fmt: skip
    tail = f"{say['slogan']} · {say['mark']}"
    draw.text((width - margin, footer + 45), tail, font=small, fill=RED, anchor="ra")

    # Three steps in a tinted box above the footer, one left-aligned block.
    steps = [(say[f"step_{key}"], say[f"step_{key}_text"]) for key in ("scan", "raise", "follow")]
    face = font.at(60)
    pitch = 112
    box_bottom = footer - 60
    box_top = box_bottom - len(steps) * pitch - 70
    draw.rounded_rectangle((margin, box_top, width - margin, box_bottom), radius=30, fill=PALE)
    widths = [draw.textlength(a + b, font=face) for a, b in steps]
    left = centre - min(max(widths), width - 2 * margin) / 2
    y = box_top + 50
    for head, rest in steps:
        draw.text((left, y), head, font=face, fill=RED, stroke_width=1, stroke_fill=RED)
        draw.text((left + draw.textlength(head, font=face), y), rest, font=face, fill=INK)
        y += pitch

    # The codes fill what is left: two side by side, or one larger, each captioned.
    count = len(content.codes)
    caption, frame = 120, 14
    room = box_top - 50 - top - caption - 2 * frame
    slot = min(room, {1: 860, 2: 620}.get(count, 440))
    gap = (width - 2 * margin - count * slot) // (count + 1) if count else 0
    y = top + frame + max(0, (room - slot) // 2)
    for n, code in enumerate(content.codes):
        left = margin + gap + n * (slot + gap)
        draw.rounded_rectangle(
            (left - frame, y - frame, left + slot + frame, y + slot + frame),
            radius=24, outline=code.colour, width=8,
        )  # fmt: skip
        image = qr_image(code.data, slot - 8)
        offset = (slot - image.width) // 2
        page.paste(image, (left + offset, y + offset))
        draw.text(
            (left + slot // 2, y + slot + frame + 30), code.caption, font=font.at(60),
            fill=code.colour, anchor="ma", stroke_width=1, stroke_fill=code.colour,
        )  # fmt: skip
    return page
