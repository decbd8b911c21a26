"""Possible duplicates: which open topics read like a new one.

Residents name the same matter in different words ("下雨后小区里到处是水" / "小区雨天积水严重"):
overlapping characters miss most of that (issue 12 measured 2 of 11 found). So a text is cut
into words (jieba, with its own dictionary), every word or phrase of the domain's synonym
table (workflow/similar_words.toml) becomes its concept, and each remaining word weighs what
it says: rare words much, common ones little, filler nothing (jieba's word frequencies, not
the pool's, so that a score means the same in a room of five topics and a district of ten
thousand and a threshold can be fixed). Titles count double: they name the matter. Topics
are compared by the cosine of these weighted words (bench/similar.py measures it against
the bigram matcher it replaced: bench/README.md).

A topic's profile depends only on its text, so profiles are kept (``_cached_profile``) and a
look-up over a district's open topics only multiplies a few weights per candidate.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Below this cosine a pair is not worth a reviewer's or a resident's attention.
THRESHOLD = 0.3
#: A match far behind the best one is another matter that shares its words (路灯不亮 behind
#: 路灯坏了, 路面坑洼 far behind): shown only at this share of the best score or more.
RELATIVE = 0.8
WORDS_FILE = Path(__file__).with_name("similar_words.toml")
#: What a generic concept (broken, at night…) weighs, and a concept of a matter.
GENERIC_WEIGHT = 2.0
CONCEPT_WEIGHT = 7.0
#: A word the dictionary does not know (a place name, "号楼") weighs like a fairly rare one.
UNKNOWN_WEIGHT = 6.0
#: Words at least this common (the dictionary's log frequency) weigh nothing: 的, 是, 很.
COMMON = 5.5
#: Enough profiles for a few districts' open topics, a few hundred bytes each.
CACHE_SIZE = 50_000
_NOT_TEXT = re.compile(r"[\W_]+", re.UNICODE)

Profile = dict[str, float]  # word or concept → weight, of length 1 (empty: nothing to say)


@dataclass(frozen=True)
class Match:
    key: int
    score: float


class _Words:
    """jieba's segmenter, the synonym table's phrases and concepts, and the weights. Built
    once per process, on first use or ``warm()`` (jieba reads its dictionary: about a
    second)."""

    def __init__(self, table: dict[str, Any]) -> None:
        import jieba  # type: ignore[import-untyped]

        logging.getLogger("jieba").setLevel(logging.WARNING)
        self.tokenizer = jieba.Tokenizer()
        self.tokenizer.initialize()
        self.concept: dict[str, str] = {}
        self.weight: dict[str, float] = {}
        for section, weight in (("concepts", CONCEPT_WEIGHT), ("generic", GENERIC_WEIGHT)):
            for name, phrases in table[section].items():
                key = "#" + name  # a concept never collides with a word
                self.weight[key] = weight
                for phrase in phrases:
                    self.concept[_normal(phrase)] = key
        self.longest = max(len(phrase) for phrase in self.concept)
        self.stop = frozenset(_normal(word) for word in table["stop"])
        self.total = self.tokenizer.total

    def words(self, text: str) -> dict[str, float]:
        """Each word or concept of ``text`` with its weight times its count."""
        found: dict[str, float] = {}
        for run in _NOT_TEXT.split(_normal(text)):
            for word in self._cut(run):
                key = self.concept.get(word)
                if key is None:
                    if word in self.stop:
                        continue
                    key, weight = word, self._weight(word)
                else:
                    weight = self.weight[key]
                if weight > 0:
                    found[key] = found.get(key, 0.0) + weight
        return found

    def _cut(self, run: str) -> Iterator[str]:
        """The table's phrases of two characters or more, longest first from the left, and
        jieba's words between them. The phrases go first because jieba's dictionary would
        cut some of them apart ("路灯不亮" as 路 / 灯不亮); single characters (灯, 堵) count as
        their concept only where jieba leaves them alone, so 路口 stays 路口."""
        start = i = 0
        while i < len(run):
            for size in range(min(self.longest, len(run) - i), 1, -1):
                if run[i : i + size] in self.concept:
                    if start < i:
                        yield from self.tokenizer.cut(run[start:i])
                    yield run[i : i + size]
                    i = start = i + size
                    break
            else:
                i += 1
        if start < len(run):
            yield from self.tokenizer.cut(run[start:])

    def _weight(self, word: str) -> float:
        freq = self.tokenizer.FREQ.get(word)
        if not freq:
            return UNKNOWN_WEIGHT if len(word) > 1 or not word.isdecimal() else 0.0
        return max(0.0, math.log(self.total / freq) - COMMON)


_lock = threading.Lock()
_words: _Words | None = None


def _vocabulary() -> _Words:
    global _words
    with _lock:
        if _words is None:
            _words = _Words(tomllib.loads(WORDS_FILE.read_text("utf-8")))
        return _words


def warm() -> None:
    """Load the vocabulary now (about a second), so that the first look-up does not wait
    (bench/similar.py; the app leaves it to the first look-up: bench/README.md)."""
    _vocabulary()


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def profile(title: str, background: str = "") -> Profile:
    """The topic's weighted words, the title's counted twice, scaled to length 1."""
    words = _vocabulary()
    merged = {key: 2 * weight for key, weight in words.words(title).items()}
    for key, weight in words.words(background).items():
        merged[key] = merged.get(key, 0.0) + weight
    norm = math.sqrt(sum(v * v for v in merged.values()))
    return {key: value / norm for key, value in merged.items()} if norm else {}


@lru_cache(maxsize=CACHE_SIZE)
def _cached_profile(title: str, background: str) -> Profile:
    return profile(title, background)


def cosine(a: Profile, b: Profile) -> float:
    if len(b) < len(a):
        a, b = b, a
    return sum(weight * b.get(key, 0.0) for key, weight in a.items())


def most_similar(
    title: str,
    background: str,
    candidates: Iterable[tuple[int, str, str]],
    limit: int = 3,
    threshold: float = THRESHOLD,
    relative: float = RELATIVE,
) -> list[Match]:
    """The ``limit`` candidates (id, title, background) most like the given topic, best
    first, none below ``threshold``."""
    target = profile(title, background)
    if not target:
        return []
    scored = []
    for key, other_title, other_background in candidates:
        score = cosine(target, _cached_profile(other_title, other_background))
        if score >= threshold:
            scored.append(Match(key, score))
    scored.sort(key=lambda m: (-m.score, m.key))
    return [m for m in scored[:limit] if m.score >= relative * scored[0].score]
