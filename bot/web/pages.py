"""The template environment of every HTML page in ``bot/web`` (the project's one factory,
``notices.templating``, with escaping on), and the filters the public pages share."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from notices.templating import environment
from workflow.clock import CHINA
from workflow.texts import label

TEMPLATES = Path(__file__).with_name("templates")


def day(moment: datetime) -> str:
    """A date as the pages show it: 2026年3月2日 (China time)."""
    local = moment.astimezone(CHINA)
    return f"{local.year}年{local.month}月{local.day}日"


def minute(moment: datetime) -> str:
    local = moment.astimezone(CHINA)
    return f"{day(local)} {local:%H:%M}"


PAGES = environment(TEMPLATES, html=True)
PAGES.filters["day"] = day
PAGES.filters["minute"] = minute
PAGES.filters["state"] = lambda state: label("states", state)
