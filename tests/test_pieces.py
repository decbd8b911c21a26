"""Long texts cut into pieces each platform takes, counted in the platform's own unit."""

from __future__ import annotations

from bot.pieces import split_text, utf8_bytes, utf16_units
from bot.telegram import TEXT_LIMIT
from bot.wechat.client import TEXT_BYTES


def test_telegram_counts_utf16_units() -> None:
    emoji = "😀" * 3000  # two UTF-16 units each
    pieces = split_text(emoji, TEXT_LIMIT, utf16_units)
    assert "".join(pieces) == emoji
    assert [len(p) for p in pieces] == [TEXT_LIMIT // 2, 3000 - TEXT_LIMIT // 2]
    assert split_text("短", TEXT_LIMIT, utf16_units) == ["短"]


def test_wechat_counts_utf8_bytes_and_cuts_at_line_breaks() -> None:
    lines = [f"{n}. 运河步道增设公厕，老年人晨练不方便" for n in range(1, 201)]
    text = "\n".join(lines)
    pieces = split_text(text, TEXT_BYTES, utf8_bytes)
    assert len(pieces) > 1
    assert all(utf8_bytes(p) <= TEXT_BYTES for p in pieces)
    assert "\n".join(pieces) == text  # cut only at line breaks, nothing lost
    assert all(p.split("\n")[0] in lines for p in pieces)  # every piece starts with an item


def test_one_long_line_is_cut_mid_line() -> None:
    text = "路" * 1000  # 3,000 bytes, no line break
    pieces = split_text(text, TEXT_BYTES, utf8_bytes)
    assert "".join(pieces) == text
    assert [utf8_bytes(p) for p in pieces] == [TEXT_BYTES // 3 * 3, 3000 - TEXT_BYTES // 3 * 3]
