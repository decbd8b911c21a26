"""Long texts in pieces a platform takes: each platform caps a message, and counts in its
own unit (Telegram: UTF-16 code units; WeChat: UTF-8 bytes)."""

from __future__ import annotations

from collections.abc import Callable


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def split_text(text: str, limit: int, size: Callable[[str], int]) -> list[str]:
    """Pieces of at most ``limit`` as ``size`` counts, cut at a line break when one is in
    the second half of the piece (else mid-line). Joined with line breaks they are the text
    again, less the line breaks at the cuts."""
    pieces = []
    while size(text) > limit:
        cut, used = 0, 0
        while used + size(text[cut]) <= limit:
            used += size(text[cut])
            cut += 1
        newline = text.rfind("\n", 0, cut)
        if newline > cut // 2:
            cut = newline
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    pieces.append(text)
    return pieces
