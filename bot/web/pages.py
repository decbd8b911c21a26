"""The template environment of every HTML page in ``bot/web`` (the project's one factory,
``notices.templating``, with escaping on)."""

from __future__ import annotations

from pathlib import Path

from notices.templating import environment

TEMPLATES = Path(__file__).with_name("templates")

PAGES = environment(TEMPLATES, html=True)
