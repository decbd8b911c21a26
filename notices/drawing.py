"""What every printed page draws the same way (the room posters in bot/poster.py, the 公示
notices in notices/printable.py): crisp QR codes, and Chinese text wrapped to a width.

In ``notices`` because the notices print pages too and may not import ``bot``."""

from __future__ import annotations

import qrcode
import qrcode.constants
from PIL import Image, ImageDraw, ImageFont


def qr_matrix(data: str) -> list[list[bool]]:
    """The modules (with the 4-module quiet zone) of ``data`` at error correction Q."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_Q, border=4)
    code.add_data(data)
    code.make(fit=True)
    return code.get_matrix()


def qr_image(data: str, size: int) -> Image.Image:
    """A crisp black-on-white QR code at most ``size`` pixels wide: every module is a whole
    number of pixels (no resampling blur)."""
    matrix = qr_matrix(data)
    modules = len(matrix)
    small = Image.new("1", (modules, modules), 1)
    small.putdata([0 if dark else 1 for row in matrix for dark in row])
    box = max(1, size // modules)
    return small.resize((modules * box, modules * box), Image.Resampling.NEAREST)


def wrap(
    draw: ImageDraw.ImageDraw, text: str, face: ImageFont.FreeTypeFont, width: int
) -> list[str]:
    """``text`` in lines at most ``width`` pixels wide, broken between any two characters
    (Chinese has no spaces to break at); each line break of ``text`` starts a new line."""
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for char in paragraph:
            if line and draw.textlength(line + char, font=face) > width:
                lines.append(line)
                line = ""
            line += char
        lines.append(line)
    return lines
