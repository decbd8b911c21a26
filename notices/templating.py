"""The one way this project makes a Jinja2 environment, for chat texts and HTML pages alike.

Both kinds get the same settings: ``StrictUndefined`` (a name a template uses and its caller
did not pass is an error, never an empty string in a message or on a page), our filters, and
none of Jinja's default globals (``range``, ``lipsum``, ``cycler``…): no template uses them,
and ``Template.render`` copies them, a ChainMap slow to iterate, into every context; without
them a reminder renders in two thirds of the time (``bench/render.py``).
They differ in escaping only: chat messages are plain text and go out as written; HTML pages
escape every value.

It lives in ``notices`` because chat texts are rendered here and ``notices`` must not import
``bot``; the HTML pages (``bot/web``) import it from here.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from workflow.texts import by_day

#: Templates of the chat messages: events (submitter/, reviewer/) and reminders/.
TEXT_TEMPLATES = Path(__file__).with_name("templates")


def environment(directory: Path, *, html: bool) -> Environment:
    """An environment loading from ``directory``; ``html``: escape every value (pages),
    else plain text (chat messages)."""
    env = Environment(
        loader=FileSystemLoader(directory),
        autoescape=html,
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )
    env.globals.clear()  # safe while no template is loaded yet (Environment.globals)
    env.filters["by_day"] = by_day
    return env


def text_environment() -> Environment:
    """Chat messages (``notices/templates``): nothing escaped."""
    return environment(TEXT_TEMPLATES, html=False)
