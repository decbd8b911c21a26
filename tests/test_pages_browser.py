"""The public pages as a person sees them, in headless Chromium (tests/browser.py): large
type, no sideways scrolling on a small phone, Chinese glyphs drawn (not tofu), the right
language and link preview, no WCAG 2.1 A/AA violations (axe-core), and everything usable
with JavaScript off. Screenshots of each page at 360×740 and at desktop width are kept in
tests/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.web.web_auth import COOKIE, SESSIONS
from storage.db import make_engine, make_session_factory
from tests.browser import (
    DESKTOP,
    PHONE,
    LiveSite,
    Loop,
    browser_loop,
    chromium,
    context,
    screenshot,
)
from tests.conftest import empty_database
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.public_seed import HOSTILE, HOSTILE_TITLE, Board, seed
from tests.public_seed import PHONE as SECRET_PHONE
from workflow.clock import CHINA, FixedClock

__all__ = ["browser_loop", "chromium"]  # the session's loop and browser (fixtures)

#: WCAG 2.0 and 2.1, levels A and AA.
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
MIN_FONT_PX = 18

SMALL_TEXT = """() => {
  const small = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, element = node.parentElement;
    if (!node.textContent.trim() || !element.getClientRects().length) continue;
    const size = parseFloat(getComputedStyle(element).fontSize);
    if (size < MIN) small.push([element.tagName, node.textContent.trim().slice(0, 20), size]);
  }
  return small;
}""".replace("MIN", str(MIN_FONT_PX))

#: Each character drawn with the page's own font on a canvas: a font without Chinese glyphs
#: draws every one of them as the same box (or nothing), as it does an unassigned code point.
GLYPHS = """(sample) => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 64;
  const ctx = canvas.getContext('2d');
  const family = getComputedStyle(document.querySelector('h1')).fontFamily;
  const draw = (ch) => {
    ctx.clearRect(0, 0, 64, 64);
    ctx.font = `48px ${family}`;
    ctx.fillText(ch, 4, 52);
    return Array.from(ctx.getImageData(0, 0, 64, 64).data).join(',');
  };
  const tofu = draw('\\u0378');
  ctx.clearRect(0, 0, 64, 64);
  const blank = Array.from(ctx.getImageData(0, 0, 64, 64).data).join(',');
  const shapes = new Set(), bad = [];
  for (const ch of sample) {
    const shape = draw(ch);
    if (shape === tofu || shape === blank) bad.push(ch);
    shapes.add(shape);
  }
  return {bad, distinct: shapes.size};
}"""


def seeded_site(
    database_url: str, folder: Path, browser_loop: Loop, fake: FakeWeChatAPI, wechat: str = ""
) -> tuple[LiveSite, Board]:
    """The live site (WeChat at ``fake``, more ``[wechat]`` settings in ``wechat``) on the
    seeded board (tests/public_seed.py)."""
    clock = FixedClock(datetime(2026, 3, 2, 10, 0, tzinfo=CHINA))
    site = LiveSite(
        f'[database]\nurl = "{database_url}"\n'
        '[server]\npublic_base_url = "https://mashangyi.test"\n'
        'secret_key = "test-secret-key-0123456789"\n'
        '[telegram]\nbot_username = "mashangyi_test_bot"\n'
        f'[wechat]\napp_id = "{fake.app_id}"\napp_secret = "{fake.app_secret}"\n'
        f'api_base_url = "{fake.base_url}"\noauth_base_url = "{fake.base_url}"\n{wechat}',
        folder,
        clock,
        browser_loop,
    )

    async def prepare() -> Board:
        engine = make_engine(database_url)
        await empty_database(engine)
        try:
            return await seed(make_session_factory(engine), clock, site.services.media_store)
        finally:
            await engine.dispose()

    return site, site.run(prepare())


@pytest.fixture(scope="module")
def live(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, browser_loop: Loop
) -> Iterator[tuple[LiveSite, Board]]:
    fake = FakeWeChatAPI()
    browser_loop.run(fake.start())
    site, board = seeded_site(database_url, tmp_path_factory.mktemp("live"), browser_loop, fake)
    yield site, board
    site.close()
    browser_loop.run(fake.close())


def pages(board: Board) -> dict[str, str]:
    return {
        "topic": f"/t/{board.topics['lamp'].number}",
        "results-topic": f"/t/{board.topics['results'].number}",
        "list": "/topics",
        "results": "/results",
        "room": "/r/V1",
    }


LOOK = """() => ({
  lang: document.documentElement.lang,
  scroll: document.documentElement.scrollWidth,
  width: document.documentElement.clientWidth,
  body: parseFloat(getComputedStyle(document.body).fontSize),
  og: document.querySelector('meta[property="og:title"]')?.content,
  ogd: document.querySelector('meta[property="og:description"]')?.content,
  description: document.querySelector('meta[name="description"]')?.content,
})"""


@pytest.mark.parametrize("name", ["topic", "results-topic", "list", "results", "room"])
def test_each_page_reads_well_on_a_small_phone_and_a_desktop(
    chromium: Any, live: tuple[LiveSite, Board], name: str
) -> None:
    from axe_playwright_python.async_playwright import Axe

    site, board = live
    path = pages(board)[name]

    async def scenario(size: str, viewport: dict[str, int]) -> None:
        browser = await context(chromium, viewport)
        page = await browser.new_page()
        response = await page.goto(site.url(path))
        assert response is not None and response.status == 200
        seen = await page.evaluate(LOOK)
        assert seen["lang"] == "zh-Hans"
        assert seen["scroll"] <= seen["width"], f"{name} scrolls sideways at {viewport}"
        assert seen["body"] >= MIN_FONT_PX
        assert await page.evaluate(SMALL_TEXT) == [], f"text under {MIN_FONT_PX}px on {name}"
        assert seen["og"] and seen["ogd"] and seen["description"]
        text = await page.inner_text("body")
        assert SECRET_PHONE not in text and "张三丰" not in text
        heading = await page.inner_text("h1")
        sample = "".join(dict.fromkeys(c for c in heading if "\u4e00" <= c <= "\u9fff"))
        assert sample, "no Chinese in the heading"
        glyphs = await page.evaluate(GLYPHS, sample)
        assert glyphs["bad"] == [] and glyphs["distinct"] == len(sample), glyphs
        result = await Axe().run(page, options=WCAG_AA)
        violations = [(v["id"], v["help"], len(v["nodes"])) for v in result.response["violations"]]
        assert violations == [], violations
        await screenshot(page, f"pages-{name}-{size}")
        await browser.close()

    for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        site.run(scenario(size, viewport))


def test_a_topic_page_shows_what_a_resident_should_see(
    chromium: Any, live: tuple[LiveSite, Board]
) -> None:
    site, board = live

    async def scenario() -> None:
        browser = await context(chromium, PHONE)
        page = await browser.new_page()
        await page.goto(site.url(pages(board)["topic"]))
        assert await page.inner_text("h1") == "村口路灯不亮"
        counts = await page.inner_text(".counts")
        assert "点赞 2" in counts and "关注 1" in counts and "建议 2" in counts
        suggestions = await page.inner_text(".suggestions")
        assert "建议在路口加装两盏太阳能灯" in suggestions
        assert "好主意" + HOSTILE in suggestions  # shown as the text it is, not run
        assert "含有敏感词" not in await page.inner_text("body")
        # The approved photo is drawn (it loaded), and it is the only one.
        photos = page.locator(".photos img")
        assert await photos.count() == 1
        assert await photos.first.evaluate("img => img.complete && img.naturalWidth") == 480
        steps = await page.locator(".timeline li").all_inner_texts()
        assert [s.split(" ", 1)[1] for s in steps] == [
            "收到议题", "议事室受理", "党组织审定通过", "公示，征求大家的建议",
        ]  # fmt: skip
        link = page.get_by_role("link", name="点赞")
        assert await link.get_attribute("href") == (
            f"https://t.me/mashangyi_test_bot?start=p_{board.topics['lamp'].number}"
        )
        await browser.close()

    site.run(scenario())


def test_hostile_text_is_shown_never_run(chromium: Any, live: tuple[LiveSite, Board]) -> None:
    site, board = live

    async def scenario() -> None:
        browser = await context(chromium, PHONE)
        page = await browser.new_page()
        dialogs: list[str] = []

        async def dismiss(dialog: Any) -> None:
            dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", dismiss)
        await page.goto(site.url(f"/t/{board.topics['hostile'].number}"))
        assert await page.inner_text("h1") == HOSTILE_TITLE
        await page.goto(site.url(pages(board)["topic"]))
        await page.goto(site.url("/topics?q=<script>alert(2)</script>"))
        assert await page.locator("#q").input_value() == "<script>alert(2)</script>"
        assert dialogs == []
        assert await page.locator("script").count() == 0
        await browser.close()

    site.run(scenario())


def test_everything_works_without_javascript(chromium: Any, live: tuple[LiveSite, Board]) -> None:
    site, _ = live

    async def scenario() -> None:
        browser = await context(chromium, PHONE, javascript=False)
        page = await browser.new_page()
        await page.goto(site.url("/topics"))
        await page.get_by_label("搜索").fill("积水")
        await page.get_by_role("button", name="搜索").click()
        await page.wait_for_url("**/topics?q=*")
        assert await page.locator("a.title").all_inner_texts() == ["小区雨天积水严重"]
        await page.get_by_role("link", name="小区雨天积水严重").click()
        await page.wait_for_url("**/t/*")
        assert await page.locator("h1").inner_text() == "小区雨天积水严重"
        assert "落实单位：镇城管科" in await page.inner_text("body")
        await page.get_by_role("link", name="三村议事室").first.click()
        await page.wait_for_url("**/r/V3")
        assert await page.locator("h1").inner_text() == "三村议事室"
        await page.get_by_role("link", name="码上建议").first.click()
        await page.wait_for_url("**/topics")
        await page.get_by_role("link", name="市议事室", exact=True).click()
        await page.wait_for_url("**/topics?room=CITY")
        await page.get_by_role("link", name="一区议事室", exact=True).click()
        await page.wait_for_url("**/topics?room=D1")
        main = await page.locator("main").inner_text()
        assert "村口路灯不亮" in main and "四村健身器材损坏" not in main
        await screenshot(page, "pages-nojs-district")
        await browser.close()

    site.run(scenario())


WECHAT_UA = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50.2701 NetType/WIFI"


def test_in_wechat_a_signed_in_resident_likes_and_suggests_without_javascript(
    chromium: Any, live: tuple[LiveSite, Board]
) -> None:
    """The page as WeChat's browser shows it once the web authorization has named the
    person (the cookie it sets, signed here as the callback signs it): the forms, large and
    accessible, working with JavaScript off."""
    from axe_playwright_python.async_playwright import Axe

    site, board = live
    cookie = site.run(_cookie(site))

    async def signed_in(javascript: bool) -> tuple[Any, Any]:
        browser = await chromium.new_context(
            viewport=PHONE, locale="zh-CN", java_script_enabled=javascript, user_agent=WECHAT_UA
        )
        browser.set_default_timeout(5000)
        await browser.add_cookies([{"name": COOKIE, "value": cookie, "url": site.url("/")}])
        page = await browser.new_page()
        await page.goto(site.url(pages(board)["topic"]))
        return browser, page

    async def looks() -> None:
        # Scripts on for measuring (Playwright's evaluate needs them), not for the page.
        browser, page = await signed_in(True)
        assert "已通过微信确认身份" in await page.inner_text("main")
        size = await page.get_by_role("button", name="点赞").evaluate(
            "b => parseFloat(getComputedStyle(b).fontSize)"
        )
        assert size >= MIN_FONT_PX
        assert await page.evaluate(SMALL_TEXT) == []
        result = await Axe().run(page, options=WCAG_AA)
        assert [v["id"] for v in result.response["violations"]] == []
        await screenshot(page, "pages-topic-wechat-phone")
        await browser.close()

    async def acts() -> None:
        browser, page = await signed_in(False)
        await page.get_by_role("button", name="点赞").click()
        await page.wait_for_url("**/t/*")
        assert "点赞 3" in await page.inner_text(".counts")
        assert await page.get_by_role("button", name="取消点赞").count() == 1
        await page.get_by_label("提建议").fill("在村口再装一盏灯")
        await page.get_by_role("button", name="提交建议").click()
        await page.wait_for_url("**said=ok*")
        assert "您的建议已发布" in await page.inner_text("main")
        assert "在村口再装一盏灯" in await page.inner_text(".suggestions")
        await browser.close()

    site.run(looks())
    site.run(acts())


async def _cookie(site: LiveSite) -> str:
    """A session cookie for a new WeChat person, signed by the app's own signer."""
    from storage.db import transaction
    from workflow.webauth import person_for_openid

    openid = "oNeighbourBrowser000000000001"
    async with transaction(site.services.sessions) as session:
        person = await person_for_openid(session, openid, site.clock.now())
    app_sessions = site.runner.app[SESSIONS]
    return app_sessions.issue(person, openid, site.clock.now())
