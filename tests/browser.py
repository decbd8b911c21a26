"""Pages in a real browser: Debian's Chromium driven by Playwright, against the real app
served on loopback.

Chromium (Playwright's async API) and the app both live on one event loop in a thread of
its own (``Loop``), for the whole session: the tests are plain functions that hand their
steps to it (``LiveSite.run``). Not Playwright's sync API in the main thread: while it runs
it marks the main thread's loop as running, and every pytest-asyncio test after it would
then refuse to start. One Chromium per test session (``chromium``); each test opens its own
context (``context``).

Chromium and a CJK font are installed by ``python3 dev.py setup`` (apt-get). Where they are
missing the browser tests skip saying so; under CI (``CI`` set) they fail instead, since CI's
set-up installs them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from bot.config import load_config
from bot.services import Services, build_services
from bot.web import create_app
from workflow.clock import Clock

CHROMIUM = Path("/usr/bin/chromium")
CJK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)
ARTIFACTS = Path(__file__).with_name("artifacts")
#: A small phone (the narrowest width the pages are made for) and a desktop window.
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 900}

T = TypeVar("T")


def missing() -> str:
    """Why the browser tests cannot run here ("" when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (python3 dev.py setup)"
    if not CHROMIUM.exists():
        return f"no {CHROMIUM} (python3 dev.py setup installs Debian's chromium via apt-get)"
    if not any(font.exists() for font in CJK_FONTS):
        return "no CJK font (python3 dev.py setup installs fonts-wqy-microhei via apt-get)"
    return ""


class Loop:
    """An event loop running in a daemon thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="session")
def browser_loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def chromium(browser_loop: Loop) -> Iterator[Any]:
    """One headless Chromium (an async Playwright ``Browser`` on ``browser_loop``)."""
    why = missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {why}")
        pytest.skip(why)
    from playwright.async_api import async_playwright

    async def start() -> tuple[Any, Any]:
        playwright = await async_playwright().start()
        # --no-sandbox: the tests run as root here and in CI, where Chromium's sandbox
        # refuses to start; the pages are our own, served on loopback.
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        return playwright, browser

    playwright, browser = browser_loop.run(start())
    yield browser

    async def stop() -> None:
        await browser.close()
        await playwright.stop()

    browser_loop.run(stop())


class LiveSite:
    """The app (``create_app`` with real services) listening on 127.0.0.1, on ``loop``."""

    def __init__(self, config_text: str, config_dir: Path, clock: Clock, loop: Loop) -> None:
        path = config_dir / "site.toml"
        path.write_text(config_text, "utf-8")
        self.config_path, self.clock, self.loop = path, clock, loop
        self.services: Services = self.run(self._start())

    async def _start(self) -> Services:
        services = build_services(load_config(self.config_path, env={}), clock=self.clock)
        self.runner = web.AppRunner(create_app(services, run_outbox=False))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return services

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the site's loop (seeding, a browser scenario)."""
        return self.loop.run(coroutine)

    def close(self) -> None:
        async def stop() -> None:
            await self.runner.cleanup()
            await self.services.close()

        self.run(stop())

    def url(self, path: str) -> str:
        return self.base_url + path


async def context(browser: Any, viewport: dict[str, int], *, javascript: bool = True) -> Any:
    """A fresh browser context (no cookies) the size of ``viewport``, in Chinese."""
    made = await browser.new_context(
        viewport=viewport, locale="zh-CN", java_script_enabled=javascript
    )
    made.set_default_timeout(5000)  # our pages answer in milliseconds: fail fast, not in 30 s
    return made


async def screenshot(page: Any, name: str) -> Path:
    """Keep a full-page screenshot under tests/artifacts/ (gitignored) to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
