"""The one template-environment factory (issue 11): chat texts and HTML pages alike are
strict about undefined names; only pages escape."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError

from notices.templating import environment

ROOT = Path(__file__).resolve().parents[1]


def test_html_escapes_and_text_does_not(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("{{ title }}", "utf-8")
    title = "<b>路灯</b> & 公厕"
    assert environment(tmp_path, html=True).get_template("t").render(title=title) == (
        "&lt;b&gt;路灯&lt;/b&gt; &amp; 公厕"
    )
    assert environment(tmp_path, html=False).get_template("t").render(title=title) == title


@pytest.mark.parametrize("html", [True, False])
def test_a_name_nobody_passed_is_an_error_not_an_empty_string(tmp_path: Path, html: bool) -> None:
    (tmp_path / "t").write_text("议题{{ number }}「{{ title }}」", "utf-8")
    with pytest.raises(UndefinedError, match="title"):
        environment(tmp_path, html=html).get_template("t").render(number="B-1")


def test_every_environment_comes_from_the_factory() -> None:
    """Four modules each made their own, with different settings (the topic page was not
    strict); a new page or text takes the factory's."""
    makers = [
        path.relative_to(ROOT).as_posix()
        for package in ("bot", "dialogs", "notices", "workflow", "storage")
        for path in sorted((ROOT / package).rglob("*.py"))
        if "Environment(" in path.read_text("utf-8")
    ]
    assert makers == ["notices/templating.py"]
