"""The "结果公布时通知我" button in headless Chromium (tests/browser.py): a topic's page with
WeChat's user agent has the open tag with the configured template, and calls ``wx.config``
with parameters signed as WeChat documents (WeChat's JS-SDK is stood in for by a stub that
records the call: the real one talks to the WeChat app); the open tag's events show a short
confirmation; a normal browser's page has none of it. Both pass the axe check, and the
WeChat page works with JavaScript off."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from bot.web.topic_page import JSSDK
from tests.browser import PHONE, LiveSite, Loop, browser_loop, chromium, context, screenshot
from tests.fakes.wechat_api import TICKET, FakeWeChatAPI
from tests.public_seed import Board
from tests.test_pages_browser import MIN_FONT_PX, SMALL_TEXT, WCAG_AA, WECHAT_UA, seeded_site

__all__ = ["browser_loop", "chromium"]  # the session's loop and browser (fixtures)

NOTIFY = "Vw3sUbSc_notify-Result_0123456789abcdefXYZ"
BASE = "https://mashangyi.test"
#: Stands in for jweixin-1.6.0.js: records what the page configures.
STUB_SDK = "window.wx = { config: function (c) { window.wxConfigured = c; } };"


@pytest.fixture(scope="module")
def live(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, browser_loop: Loop
) -> Iterator[tuple[LiveSite, Board, FakeWeChatAPI]]:
    fake = FakeWeChatAPI()
    browser_loop.run(fake.start())
    folder = tmp_path_factory.mktemp("subscribe")
    wechat = f'subscribe_template_id = "{NOTIFY}"\n'
    site, board = seeded_site(database_url, folder, browser_loop, fake, wechat)
    yield site, board, fake
    site.close()
    browser_loop.run(fake.close())


async def in_wechat(chromium: Any, javascript: bool = True) -> Any:
    browser = await chromium.new_context(
        viewport=PHONE, locale="zh-CN", java_script_enabled=javascript, user_agent=WECHAT_UA
    )
    browser.set_default_timeout(5000)

    async def sdk(route: Any) -> None:
        await route.fulfill(body=STUB_SDK, content_type="application/javascript")

    await browser.route(JSSDK, sdk)
    return browser


def test_in_wechat_the_page_offers_the_subscription_with_a_signed_config(
    chromium: Any, live: tuple[LiveSite, Board, FakeWeChatAPI]
) -> None:
    from axe_playwright_python.async_playwright import Axe

    site, board, fake = live
    path = f"/t/{board.topics['lamp'].number}"

    async def scenario() -> None:
        browser = await in_wechat(chromium)
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(site.url(path))
        tag = page.locator("wx-open-subscribe")
        assert await tag.count() == 1
        assert await tag.get_attribute("template") == NOTIFY
        assert "结果公布时通知我" in await tag.inner_html()  # the button, in its template
        configured = await page.evaluate("() => window.wxConfigured")
        assert configured["appId"] == fake.app_id and configured["debug"] is False
        assert configured["openTagList"] == ["wx-open-subscribe"]
        assert configured["jsApiList"] == []
        plain = (
            f"jsapi_ticket={fake.jsapi_ticket}&noncestr={configured['nonceStr']}"
            f"&timestamp={configured['timestamp']}&url={BASE}{path}"
        )
        assert configured["signature"] == hashlib.sha1(plain.encode()).hexdigest()
        assert errors == []  # the content security policy let the page's scripts run

        # WeChat answers the button with the open tag's events.
        accepted = json.dumps({NOTIFY: json.dumps({"status": "accept"})})
        await tag.evaluate(
            "(tag, details) => tag.dispatchEvent(new CustomEvent('success', "
            "{detail: {subscribeDetails: details}}))",
            accepted,
        )
        said = page.get_by_role("status")
        assert await said.inner_text() == "已订阅：结果公布时会通过微信通知您。"
        await tag.evaluate("tag => tag.dispatchEvent(new CustomEvent('error', {detail: {}}))")
        assert await said.inner_text() == "暂时无法订阅，请稍后再试。"

        assert await page.evaluate(SMALL_TEXT) == [], f"text under {MIN_FONT_PX}px"
        result = await Axe().run(page, options=WCAG_AA)
        violations = [(v["id"], v["help"], len(v["nodes"])) for v in result.response["violations"]]
        assert violations == [], violations
        await screenshot(page, "pages-topic-wechat-subscribe-phone")
        # Many pages, one ticket.
        for _ in range(3):
            await page.reload()
        assert len(fake.calls(TICKET)) == 1
        await browser.close()

    site.run(scenario())


def test_with_javascript_off_the_wechat_page_still_works(
    chromium: Any, live: tuple[LiveSite, Board, FakeWeChatAPI]
) -> None:
    site, board, _ = live

    async def scenario() -> None:
        browser = await in_wechat(chromium, javascript=False)
        page = await browser.new_page()
        response = await page.goto(site.url(f"/t/{board.topics['lamp'].number}"))
        assert response is not None and response.status == 200
        assert await page.inner_text("h1") == "村口路灯不亮"
        assert "大家的建议" in await page.inner_text("main")
        await browser.close()

    site.run(scenario())


def test_a_normal_browser_page_has_none_of_it(
    chromium: Any, live: tuple[LiveSite, Board, FakeWeChatAPI]
) -> None:
    from axe_playwright_python.async_playwright import Axe

    site, board, _ = live

    async def scenario() -> None:
        browser = await context(chromium, PHONE)
        page = await browser.new_page()
        await page.goto(site.url(f"/t/{board.topics['lamp'].number}"))
        assert await page.locator("wx-open-subscribe, script, #notify").count() == 0
        assert await page.evaluate("() => typeof window.wx") == "undefined"
        assert "结果公布时通知我" not in await page.inner_text("body")
        result = await Axe().run(page, options=WCAG_AA)
        assert [v["id"] for v in result.response["violations"]] == []
        await browser.close()

    site.run(scenario())
