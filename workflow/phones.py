"""Contact numbers as people type them: a mainland mobile or a landline with area code.

Typed on a phone's Chinese keyboard, digits often come full-width (１３９…) and dashes
as "－" or "—": the text is NFKC-normalised first. Stored forms are "13912345678" and
"0517-83661234", whatever the spacing, dashes or parentheses typed.
"""

from __future__ import annotations

import re
import unicodedata

MOBILE = re.compile(r"1[3-9]\d{9}")
#: Area code 3–4 digits starting with 0, then the local number, separated by "-" or by
#: parentheses around the code: 0517-83661234, (0517)83661234.
_SEPARATED = re.compile(r"\((0\d{2,3})\)-?([\d-]+)|(0\d{2,3})-([\d-]+)")
_LOCAL = re.compile(r"\d{7,8}")
#: Dashes NFKC leaves alone, read as "-".
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")


def contact_number(typed: str) -> str | None:
    """The normalised number, or None if ``typed`` is neither a mobile nor a landline."""
    value = _DASHES.sub("-", re.sub(r"\s", "", unicodedata.normalize("NFKC", typed)))
    digits = value.replace("-", "")
    mobile = digits.removeprefix("+86")
    if MOBILE.fullmatch(mobile):
        return mobile
    found = _SEPARATED.fullmatch(value)
    if found:
        area, local = found[1] or found[3], (found[2] or found[4]).replace("-", "")
    elif re.fullmatch(r"0\d+", digits):
        # Digits only: Beijing (010) and 02x have three-digit codes, every other one four.
        size = 3 if digits.startswith(("010", "02")) else 4
        area, local = digits[:size], digits[size:]
    else:
        return None
    return f"{area}-{local}" if _LOCAL.fullmatch(local) else None
