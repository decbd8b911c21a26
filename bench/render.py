"""Rendering one reminder: the sweeper's renderer against the least Jinja can cost.

    .venv/bin/python bench/render.py            # about 20 seconds

A first sweep renders about twenty thousand messages (bench/sweep.py), so microseconds per
message count. Rows, interleaved in rounds in one process (best round each, CPU time), as
ratios to the floor measured in the same run:

- ``floor``: the compiled template's root render function on a prepared context
  (``jinja2.runtime.new_context`` + ``Template.root_render_func``, Jinja's internals: what
  the sweeper called until issue 11). A yardstick only: no supported API costs less;
- ``sweeper``: ``notices.reminders._Renderer``: ``Template.render`` on the project's text
  environment (``notices.templating``: no default globals);
- ``render, default globals``: the same call on an environment with Jinja's default
  globals (``range``, ``lipsum``…), which every ``render`` copies from a ChainMap;
- ``make_module, shared``: ``str(Template.make_module(values, shared=True))``, the other
  public way to render without copying the values, on the project's environment.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from jinja2.runtime import new_context

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notices.reminders.sweeper import _Renderer
from notices.templating import TEXT_TEMPLATES, text_environment
from workflow.texts import by_day

NAME = "reminders/review.nudge.txt"
TODAY = date(2026, 3, 18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=500, help="renders per row per round")
    args = parser.parse_args()

    template = text_environment().get_template(NAME)
    defaults = Environment(loader=FileSystemLoader(TEXT_TEMPLATES), undefined=StrictUndefined)
    defaults.filters["by_day"] = by_day
    with_globals = defaults.get_template(NAME)
    sweep = SimpleNamespace(today=TODAY, settings=SimpleNamespace(escalate_after_days=3))
    renderer = _Renderer(template, sweep)  # type: ignore[arg-type]
    common = dict(renderer.common)
    values = {
        "number": "B-0000042", "title": "议题42", "room": "村3-4-5", "state": "初审",
        "waited": 9, "overdue": 4, "due": date(2026, 3, 12), "expected": date(2026, 3, 23),
        "escalated": False, "url": "http://127.0.0.1:8080/t/B-0000042",
    }  # fmt: skip
    floor_globals = dict(template.globals)

    def floor() -> str:
        context = new_context(
            template.environment,
            template.name,
            template.blocks,
            {**floor_globals, **values, **common},
            shared=True,
        )
        return "".join(template.root_render_func(context)).strip()

    rows = {
        "floor": floor,
        "sweeper": lambda: renderer(values),
        "render, default globals": lambda: with_globals.render(values, **common).strip(),
        "make_module, shared": lambda: str(
            template.make_module({**values, **common}, shared=True)
        ).strip(),
    }
    texts = {f() for f in rows.values()}
    assert len(texts) == 1, texts  # the same message every way
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(args.rounds):
        for name, render in rows.items():
            start = time.process_time_ns()
            for _ in range(args.calls):
                render()
            best[name] = min(best[name], (time.process_time_ns() - start) / args.calls / 1000)
    print(f"{'':24} {'µs/message':>10} {'/ floor':>8}")
    for name, micros in best.items():
        print(f"{name:24} {micros:>10.1f} {micros / best['floor']:>8.2f}")


if __name__ == "__main__":
    main()
