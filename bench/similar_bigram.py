"""The bigram matcher of workflow/similar.py until issue 12, kept for bench/similar.py to
compare with: Chinese text similarity on character bigrams.

Chinese has no spaces, and residents describe the same problem in different words
("路灯不亮" / "路灯坏了晚上很黑"); overlapping two-character pieces catch that without a
segmenter or a model. Titles count double: they name the matter.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

#: Below this cosine a pair is not worth a reviewer's attention.
THRESHOLD = 0.25
#: Words that say nothing about the matter itself.
STOP = ("希望", "建议", "请求", "反映", "问题", "情况", "我们", "小区", "社区", "村里", "一下")
_NOT_TEXT = re.compile(r"[\W_]+", re.UNICODE)


def _pieces(text: str) -> Counter[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    for word in STOP:
        text = text.replace(word, " ")
    pieces: Counter[str] = Counter()
    for run in _NOT_TEXT.split(text):
        if len(run) == 1:
            pieces[run] += 1
        pieces.update(run[i : i + 2] for i in range(len(run) - 1))
    return pieces


def profile(title: str, background: str = "") -> Counter[str]:
    title_pieces = _pieces(title)
    return title_pieces + title_pieces + _pieces(background)


def cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(count * b[piece] for piece, count in a.items() if piece in b)
    return dot / (
        math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    )


@dataclass(frozen=True)
class Match:
    key: int
    score: float


def most_similar(
    title: str,
    background: str,
    candidates: Iterable[tuple[int, str, str]],
    limit: int = 3,
    threshold: float = THRESHOLD,
) -> list[Match]:
    """The ``limit`` candidates (id, title, background) most like the given topic."""
    target = profile(title, background)
    scored = [Match(key, cosine(target, profile(t, b))) for key, t, b in candidates]
    scored = [m for m in scored if m.score >= threshold]
    return sorted(scored, key=lambda m: (-m.score, m.key))[:limit]
