"""Chinese catalogues (TOML): one place per layer for every text a person reads."""

from __future__ import annotations

import tomllib
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any


class Catalogue:
    def __init__(self, path: Path) -> None:
        self.path = path

    @cached_property
    def sections(self) -> dict[str, dict[str, str]]:
        return tomllib.loads(self.path.read_text(encoding="utf-8"))

    def text(self, section: str, key: str, **params: Any) -> str:
        """``text("errors", "missing_field", field="理由")`` → the formatted Chinese text."""
        return self.sections[section][key].format(**params)

    def label(self, section: str, key: str) -> str:
        """A label, falling back to the key itself for values the catalogue does not know."""
        return self.sections[section].get(key, key)


WORKFLOW = Catalogue(Path(__file__).with_name("zh_CN.toml"))
text, label = WORKFLOW.text, WORKFLOW.label


def catalogue() -> dict[str, dict[str, str]]:
    return WORKFLOW.sections


def by_day(day: date) -> str:
    """A review step's due date as every Chinese text shows it, "3月9日前": the last day
    of its five working days (``workflow.clock.last_day``)."""
    return text("dates", "by_day", month=day.month, day=day.day)
