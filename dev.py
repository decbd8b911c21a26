#!/usr/bin/env python3
"""Set up and run mashangyi with nothing but Python 3.11+ on the machine.

    python3 dev.py demo   # set up, load the demo city into var/demo.db, serve it
    python3 dev.py test   # set up, lint, type-check, run the whole test suite
    python3 dev.py setup  # only set up (.venv from uv.lock)

The set-up is a pinned uv in .tools/ that installs exactly uv.lock into .venv/, and, where
apt-get can (Debian, as root), Debian's Chromium and a CJK font for the page tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UV_VERSION = "0.13.8"
TOOLS, VENV = ROOT / ".tools", ROOT / ".venv"
BIN = "Scripts" if os.name == "nt" else "bin"
DEMO_CONFIG = ROOT / "var" / "demo.toml"
#: What the browser tests (tests/browser.py) need from the system: the browser Playwright
#: drives (its own downloaded builds are not used) and a font with Chinese glyphs.
CHROMIUM = Path("/usr/bin/chromium")
CJK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)
SYSTEM_PACKAGES = ("chromium", "fonts-wqy-microhei")


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True, env=env)


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 (this script may run under any python3)
        sys.exit("mashangyi needs Python 3.11 or newer")
    uv = TOOLS / BIN / "uv"
    if not uv.exists():
        venv.create(TOOLS, with_pip=True)
        run(TOOLS / BIN / "python", "-m", "pip", "install", "-q", f"uv=={UV_VERSION}")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_PROJECT_ENVIRONMENT": str(VENV)}
    # Bytecode compiled once at install: where PYTHONDONTWRITEBYTECODE is set (this
    # machine's default) every process would otherwise compile its dependencies from source
    # at each start — seconds per `serve --workers` child on a busy machine.
    run(uv, "sync", "--frozen", "--compile-bytecode", "--python", sys.executable, env=env)
    system_packages()


def system_packages() -> None:
    """Chromium and a CJK font through apt-get when missing; where that cannot be done the
    browser tests skip, saying why (tests/browser.py)."""
    if CHROMIUM.exists() and any(font.exists() for font in CJK_FONTS):
        return
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(
            "note: no Chromium or CJK font, and apt-get is not available as root here: the "
            f"browser tests will skip (install {' '.join(SYSTEM_PACKAGES)} to run them)",
            flush=True,
        )
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(apt, "update", "-qq", env=env)
        run(apt, "install", "-y", "-qq", "--no-install-recommends", *SYSTEM_PACKAGES, env=env)
    except subprocess.CalledProcessError as exc:
        print(f"note: apt-get failed ({exc}): the browser tests will skip", flush=True)


def tool(name: str) -> Path:
    return VENV / BIN / name


def demo() -> None:
    setup()
    if not DEMO_CONFIG.exists():
        DEMO_CONFIG.parent.mkdir(exist_ok=True)
        DEMO_CONFIG.write_text('[database]\nurl = "sqlite+aiosqlite:///demo.db"\n', "utf-8")
    run(tool("mashangyi"), "--config", DEMO_CONFIG, "demo")
    print(
        "\nDemo city loaded. In another terminal try:\n"
        f"  .venv/bin/mashangyi --config {DEMO_CONFIG.relative_to(ROOT)} topics list\n"
        f"  .venv/bin/mashangyi --config {DEMO_CONFIG.relative_to(ROOT)} topics show "
        "DH-2026-000001\n",
        flush=True,
    )
    os.execv(tool("mashangyi"), [str(tool("mashangyi")), "--config", str(DEMO_CONFIG), "serve"])


def test(extra: list[str]) -> None:
    setup()
    run(tool("ruff"), "check", ".")
    run(tool("mypy"))  # the packages and settings in pyproject.toml
    run(tool("pytest"), *extra)


def main() -> None:
    command, extra = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command == "setup":
        setup()
    elif command == "demo":
        demo()
    elif command == "test":
        test(extra)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
