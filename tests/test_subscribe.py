"""Asking for the WeChat subscription consent "结果公布时通知我": a topic's page opened inside
WeChat carries the open tag ``<wx-open-subscribe>`` with the configured template and a
``wx.config`` signed with the account's jsapi_ticket (fetched once, kept, shared through
Redis when there is one); elsewhere, or without the template, none of it. The bot links to
that button after a follow, like or suggestion on WeChat, unless the person has an unused
consent. (The page in Chromium: tests/test_subscribe_browser.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.wechat.client import WeChatAPI
from bot.wechat.jssdk import JsapiTickets, signature
from tests import test_wechat
from tests.fakes.wechat_api import DOC_TICKET, TICKET, FakeWeChatAPI
from tests.test_public_wechat import option, tap
from tests.test_wechat import Harness, Start, payload
from tests.world import World, build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State

NOTIFY = "Vw3sUbSc_notify-Result_0123456789abcdefXYZ"  # as in the consent event payload
WECHAT_UA = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50.2701 NetType/WIFI"
PHONE_UA = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"
REDIS_ENV = "MASHANGYI_TEST_REDIS_URL"
# The WeChat tests' fixtures, used here by name.
fake, start = test_wechat.fake, test_wechat.start


def test_the_signature_is_the_documented_one() -> None:
    """WeChat's JS-SDK documentation, 附录1 (JS-SDK使用权限签名算法): its example."""
    assert (
        signature(
            DOC_TICKET, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value"
        )
        == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    )
    # The fragment is not part of what is signed.
    assert signature("t", "n", 1, "https://a.test/t/1#notify") == signature(
        "t", "n", 1, "https://a.test/t/1"
    )


async def setup(start: Start, clock: FixedClock, **wechat: str) -> tuple[Harness, World]:
    h = await start(**wechat)
    h.services.dialogs = h.dialogs.inner  # type: ignore[assignment]
    world = await build_world(h.services.sessions, clock)
    world.lifecycle = h.services.lifecycle
    return h, world


async def page(h: Harness, path: str, agent: str) -> tuple[str, dict[str, str]]:
    response = await h.client.get(path, headers={"User-Agent": agent})
    assert response.status == 200
    return await response.text(), dict(response.headers)


def wx_config(html: str) -> dict[str, Any]:
    found = re.search(r"wx\.config\((\{.*?\})\);", html)
    assert found, "no wx.config on the page"
    config: dict[str, Any] = json.loads(found[1])
    return config


async def test_inside_wechat_the_page_has_the_open_tag_and_a_signed_config(
    start: Start, clock: FixedClock
) -> None:
    h, world = await setup(start, clock, subscribe_template_id=NOTIFY)
    topic = await world.at(State.PUBLICIZED)
    path = f"/t/{topic.number}?from=singlemessage"
    html, headers = await page(h, path, WECHAT_UA)

    assert f'<wx-open-subscribe id="subscribe" template="{NOTIFY}">' in html
    assert "结果公布时通知我" in html and 'id="notify"' in html
    config = wx_config(html)
    assert config["appId"] == h.fake.app_id
    assert config["timestamp"] == int(clock.now().timestamp())
    assert config["openTagList"] == ["wx-open-subscribe"] and config["jsApiList"] == []
    # Recomputed from the documented algorithm with the fake's ticket and the page's URL as
    # the person's browser has it (public_base_url, path and query, no fragment).
    plain = (
        f"jsapi_ticket={h.fake.jsapi_ticket}&noncestr={config['nonceStr']}"
        f"&timestamp={config['timestamp']}&url=http://127.0.0.1:8080{path}"
    )
    assert config["signature"] == hashlib.sha1(plain.encode()).hexdigest()
    # The JS-SDK and our one inline script are allowed, nothing else.
    nonce = re.search(r'<script nonce="([^"]+)" src=', html)
    assert nonce is not None
    assert headers["Content-Security-Policy"].endswith(
        f"; script-src https://res.wx.qq.com 'nonce-{nonce[1]}'"
    )
    assert '<script nonce="' + nonce[1] + '">' in html


async def test_elsewhere_or_without_a_template_the_page_has_none_of_it(
    start: Start, clock: FixedClock
) -> None:
    h, world = await setup(start, clock, subscribe_template_id=NOTIFY)
    topic = await world.at(State.PUBLICIZED)
    html, headers = await page(h, f"/t/{topic.number}", PHONE_UA)
    assert "wx-open-subscribe" not in html and "<script" not in html and "wx.config" not in html
    assert "script-src" not in headers["Content-Security-Policy"]

    bare = await start()  # no subscription template configured
    html, headers = await page(bare, f"/t/{topic.number}", WECHAT_UA)
    assert "wx-open-subscribe" not in html and "<script" not in html
    assert "script-src" not in headers["Content-Security-Policy"]
    assert h.fake.calls(TICKET) == []  # nobody needed a ticket


async def test_the_ticket_is_fetched_once_for_many_pages_until_it_expires(
    start: Start, clock: FixedClock
) -> None:
    h, world = await setup(start, clock, subscribe_template_id=NOTIFY)
    topic = await world.at(State.PUBLICIZED)
    signatures = set()
    for n in range(5):
        html, _ = await page(h, f"/t/{topic.number}?n={n}", WECHAT_UA)
        signatures.add(wx_config(html)["signature"])
    assert len(h.fake.calls(TICKET)) == 1 and len(signatures) == 5
    (call,) = h.fake.calls(TICKET)
    assert call.method == "GET" and call.query["type"] == "jsapi"
    assert call.query["access_token"].startswith("TOKEN-")

    clock.advance(timedelta(hours=2))  # 7200 s: a new one
    await page(h, f"/t/{topic.number}", WECHAT_UA)
    assert len(h.fake.calls(TICKET)) == 2


async def test_without_a_ticket_the_page_still_shows_without_the_button(
    start: Start, clock: FixedClock
) -> None:
    h, world = await setup(start, clock, subscribe_template_id=NOTIFY)
    topic = await world.at(State.PUBLICIZED)
    h.fake.script(TICKET, errcode=40164, errmsg="invalid ip, not in whitelist")
    html, _ = await page(h, f"/t/{topic.number}", WECHAT_UA)
    assert topic.title in html and "wx-open-subscribe" not in html and "<script" not in html


@pytest.mark.skipif(not os.environ.get(REDIS_ENV), reason="needs Redis (MASHANGYI_TEST_REDIS_URL)")
async def test_two_processes_share_one_ticket_through_redis(clock: FixedClock) -> None:
    wechat = FakeWeChatAPI(app_id=f"wx{secrets.token_hex(8)}")  # keys of this test only
    await wechat.start()
    redis = Redis.from_url(os.environ[REDIS_ENV])
    apis = [
        WeChatAPI(wechat.app_id, wechat.app_secret, clock, base_url=wechat.base_url) for _ in "ab"
    ]
    try:
        first, second = (JsapiTickets(api, clock, redis) for api in apis)
        assert await first.ticket() == await second.ticket() == wechat.jsapi_ticket
        assert len(wechat.calls(TICKET)) == 1
        left = await redis.pttl(first.key)
        assert timedelta(hours=1) < timedelta(milliseconds=left) <= timedelta(seconds=7200)
    finally:
        await redis.delete(f"mashangyi:wechat:{wechat.app_id}:jsapi_ticket")
        await redis.aclose()
        for api in apis:
            await api.close()
        await wechat.close()


async def test_the_bot_offers_the_button_after_a_follow_like_or_suggestion(
    start: Start, clock: FixedClock
) -> None:
    h, world = await setup(start, clock, subscribe_template_id=NOTIFY)
    topic = await world.at(State.PUBLICIZED)
    offer = f"结果公布时通知我：打开 http://127.0.0.1:8080/t/{topic.number}#notify"
    await h.post(payload("scan", EventKey=f"p_{topic.number}"))

    followed = await tap(h, "关注", f"ft:{topic.id}:1")
    assert followed.startswith("已关注“运河步道增设公厕”") and offer in followed
    liked = await tap(h, "点赞", f"lk:{topic.id}:1")
    assert liked.startswith("已点赞") and offer in liked
    unliked = await tap(h, "取消点赞", f"lk:{topic.id}:0")
    assert offer not in unliked  # taking something back asks for nothing
    await h.text(option(unliked, "提建议"))
    posted = await h.text("建议在步道两端各建一座公厕")
    assert posted.startswith("您的建议已发布") and offer in posted

    # Once the person accepted in the pop-up, the unused consent will carry the next push.
    await h.post(payload("subscribe_msg_popup_event"))
    again = await tap(h, "点赞", f"lk:{topic.id}:1")
    assert again.startswith("已点赞") and offer not in again and "结果公布时通知我" not in again


async def test_no_offer_without_a_template(start: Start, clock: FixedClock) -> None:
    h, world = await setup(start, clock)
    topic = await world.at(State.PUBLICIZED)
    followed = await tap(h, "关注", f"ft:{topic.id}:1")
    assert followed.startswith("已关注") and "结果公布时通知我" not in followed
