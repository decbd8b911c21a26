"""The Chinese catalogue (``zh_CN.toml``): one place for every text a person reads."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any


@cache
def catalogue() -> dict[str, dict[str, str]]:
    return tomllib.loads(Path(__file__).with_name("zh_CN.toml").read_text(encoding="utf-8"))


def text(section: str, key: str, **params: Any) -> str:
    """``text("errors", "missing_field", field="理由")`` → the formatted Chinese text."""
    return catalogue()[section][key].format(**params)


def label(section: str, key: str) -> str:
    """A label, falling back to the key itself for values the catalogue does not know."""
    return catalogue()[section].get(key, key)
