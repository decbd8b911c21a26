"""The public pages over plain HTTP (issue 12, item 2): 码上建议 and 码上查情 lists by scope,
newest first, paginated and searchable; a topic's page; a room's page; approved photos only;
never a submitter, phone, location or moderated suggestion; user text escaped."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.config import load_config
from bot.services import Services, build_services
from bot.web import create_app
from storage.db import make_session_factory, transaction
from storage.models import Topic
from tests.fakes.wechat_api import QRCODE_CREATE, FakeWeChatAPI
from tests.public_seed import HOSTILE, HOSTILE_TITLE, PHONE, PNG, SUBMITTER, Board, publicized, seed
from tests.qr_decode import decode
from workflow import public
from workflow.clock import FixedClock

BOT = "mashangyi_test_bot"
BASE = "https://mashangyi.test"


@dataclass
class Site:
    board: Board
    services: Services
    client: TestClient
    fake: FakeWeChatAPI

    async def page(self, path: str, status: int = 200) -> str:
        response = await self.client.get(path)
        text = await response.text()
        assert response.status == status, (path, response.status, text[:300])
        return text


@pytest.fixture
async def site(database_url: str, engine, clock: FixedClock, tmp_path: Path) -> AsyncIterator[Site]:
    fake = FakeWeChatAPI()
    await fake.start()
    path = tmp_path / "c.toml"
    path.write_text(
        f'[server]\npublic_base_url = "{BASE}"\nsecret_key = "test-secret-key-0123456789"\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[telegram]\nbot_username = "{BOT}"\n'
        f'[wechat]\napp_id = "{fake.app_id}"\napp_secret = "{fake.app_secret}"\n'
        f'api_base_url = "{fake.base_url}"\n',
        "utf-8",
    )
    services = build_services(load_config(path, env={}), clock=clock)
    board = await seed(make_session_factory(engine), clock, services.media_store)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    yield Site(board, services, client, fake)
    await client.close()
    await services.close()
    await fake.close()


def titles(page: str) -> list[str]:
    """The topics a list shows, in order (their links' text)."""
    return re.findall(r'<a class="title" href="/t/[^"]+">([^<]*)</a>', page)


def never_private(page: str) -> None:
    for secret in (
        PHONE,
        SUBMITTER,
        "秘密小巷",
        "含有敏感词的建议",
        "被举报隐藏的建议",
        "resident",
    ):
        assert secret not in page, secret


async def test_the_city_wide_list_shows_publicized_topics_newest_first(site: Site) -> None:
    page = await site.page("/topics")
    assert titles(page) == [
        "四村健身器材损坏",
        "小区雨天积水严重",
        "&lt;b&gt;标题&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;",
        "村口路灯不亮",
    ]
    assert "运河步道增设公厕" not in page  # awaiting approval: not public
    assert '<html lang="zh-Hans">' in page
    never_private(page)


async def test_a_scope_is_a_room_and_everything_below_it(site: Site) -> None:
    assert titles(await site.page("/topics?room=V1")) == ["村口路灯不亮"]
    town = titles(await site.page("/topics?room=T1"))
    assert [t[:5] for t in town] == ["&lt;b", "村口路灯不"]  # V1 and V2, not V3 (T2) nor V4
    district = await site.page("/topics?room=D1")
    assert "小区雨天积水严重" in district and "四村健身器材损坏" not in district
    assert titles(await site.page("/topics?room=D2")) == ["四村健身器材损坏"]
    assert titles(await site.page("/topics?room=X")) == []
    await site.page("/topics?room=NOPE", status=404)
    await site.page("/topics?room=%3Cscript%3E", status=404)


async def test_results_list_shows_only_published_results(site: Site) -> None:
    page = await site.page("/results")
    assert titles(page) == ["小区雨天积水严重"]
    assert "码上查情" in page and "公示结果" in page
    assert "落实单位：镇城管科 · 完成时限：2026-06-30" in page
    assert "落实措施：立项施工" in page and "最新进展：排水管已铺设一半" in page
    assert titles(await site.page("/results?room=D2")) == []


async def test_lists_are_paginated_with_a_cursor(site: Site, clock: FixedClock) -> None:
    for n in range(public.PAGE_SIZE + 3):
        clock.advance(timedelta(minutes=1))
        await publicized(site.board.world, "V2", f"第{n:02d}号议题")
    first = await site.page("/topics?room=V2")
    shown = titles(first)
    assert len(shown) == public.PAGE_SIZE
    assert shown[0] == f"第{public.PAGE_SIZE + 2:02d}号议题"  # newest first
    after = re.search(r'href="(/topics\?room=V2&amp;after=[^"]+)"', first)
    assert after is not None, first
    second = titles(await site.page(after.group(1).replace("&amp;", "&")))
    assert second[:3] == ["第02号议题", "第01号议题", "第00号议题"]
    assert len(second) == 4 and second[3].startswith("&lt;b&gt;标题")  # the oldest, seeded one
    assert not set(second) & set(shown)
    # A cursor that is not ours is the first page, not an error.
    assert titles(await site.page("/topics?room=V2&after=garbage")) == shown


async def test_search_finds_words_in_titles_and_backgrounds(site: Site) -> None:
    assert titles(await site.page("/topics?q=路灯")) == ["村口路灯不亮"]
    assert titles(await site.page("/topics?q=积水+小区")) == ["小区雨天积水严重"]
    # The seeded background ("沿线3公里没有公厕") is every topic's: all four.
    assert len(titles(await site.page("/topics?q=公厕"))) == 4
    assert titles(await site.page("/topics?q=路灯&room=D2")) == []
    page = await site.page("/topics?q=%25")  # LIKE's wildcard is a plain character here
    assert titles(page) == [] and "没有找到相关议题" in page
    hostile = await site.page("/topics?q=%3Cscript%3E")
    assert "<script>" not in hostile and "&lt;script&gt;" in hostile


async def test_a_search_reads_a_bounded_window_and_says_where_to_go_on(
    site: Site, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(public, "SEARCH_WINDOW", 3)
    for n in range(5):
        clock.advance(timedelta(minutes=1))
        await publicized(site.board.world, "V1", f"新议题{n}")
    page = await site.page("/topics?q=路灯&room=V1")
    assert titles(page) == []  # the newest three do not mention it
    further = re.search(r'href="([^"]+)">继续查找更早的议题', page)
    assert further is not None
    assert titles(await site.page(further.group(1).replace("&amp;", "&"))) == ["村口路灯不亮"]


async def test_a_topic_page_shows_what_the_public_may_see(site: Site) -> None:
    board = site.board
    page = await site.page(f"/t/{board.topics['lamp'].number}")
    assert "<h1>村口路灯不亮</h1>" in page
    assert "沿线3公里没有公厕" in page
    assert "点赞 <strong>2</strong>" in page  # the taken-back like is not counted
    assert "关注 <strong>1</strong>" in page  # nor the ended follow
    assert "建议在路口加装两盏太阳能灯" in page
    assert "好主意&lt;script&gt;" in page and HOSTILE not in page
    never_private(page)
    # The public steps, in order.
    steps = re.findall(r"<li>\d{4}年\d+月\d+日 ([^<：]+)", page)
    assert steps == ["收到议题", "议事室受理", "党组织审定通过", "公示，征求大家的建议"]
    # Link preview.
    assert '<meta property="og:title" content="村口路灯不亮">' in page
    assert '<meta name="description" content="沿线3公里没有公厕">' in page
    assert f'<meta property="og:url" content="{BASE}/t/{board.topics["lamp"].number}">' in page
    # Outside WeChat the buttons open the bot on this topic.
    assert f"https://t.me/{BOT}?start=p_{board.topics['lamp'].number}" in page
    # The printable notice (bot/web/notice_page.py) is linked, and is there.
    notice = f"/t/{board.topics['lamp'].number}/notice.pdf"
    assert f'href="{notice}"' in page and "kind=results" not in page
    assert (await site.client.get(notice)).status == 200
    # The poll is open: candidates without votes.
    assert "本季度先办哪件事" in page and "结果在投票结束后公布" in page
    assert "票</li>" not in page


async def test_a_closed_poll_shows_its_result(site: Site, clock: FixedClock) -> None:
    clock.advance(timedelta(days=4))
    page = await site.page(f"/t/{site.board.topics['lamp'].number}")
    assert "村口路灯不亮</a>：2 票" in page
    assert "：0 票" in page


async def test_a_topic_page_escapes_hostile_text(site: Site) -> None:
    page = await site.page(f"/t/{site.board.topics['hostile'].number}")
    assert HOSTILE_TITLE not in page and "<script>" not in page and "<b>" not in page
    assert "<h1>&lt;b&gt;标题&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;</h1>" in page
    # In the link preview too (an attribute value).
    assert 'content="&lt;b&gt;标题&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    lamp = await site.page(f"/t/{site.board.topics['lamp'].number}")
    assert HOSTILE not in lamp and "<img src=x" not in lamp
    assert "好主意&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x" in lamp


async def test_results_page_shows_outcome_and_progress(site: Site) -> None:
    page = await site.page(f"/t/{site.board.topics['results'].number}")
    assert "落实单位：镇城管科" in page and "落实措施：立项施工" in page
    assert "完成时限：2026-06-30" in page
    assert "落实进展：排水管已铺设一半" in page  # in the timeline
    assert re.search(r"<li>2026年3月2日：排水管已铺设一半</li>", page)  # and under the result
    assert "安排协商会议：2026年3月20日 19:00，村部会议室" in page
    # Research findings are the conveners' working material: not on the page.
    assert "走访32户" not in page
    assert f'href="/t/{site.board.topics["results"].number}/notice.pdf?kind=results"' in page


async def test_only_approved_photos_are_served(site: Site) -> None:
    board = site.board
    lamp = board.topics["lamp"].number
    page = await site.page(f"/t/{lamp}")
    assert f'src="/t/{lamp}/photo/{board.photos["approved"]}"' in page
    assert f"/photo/{board.photos['unapproved']}" not in page
    response = await site.client.get(f"/t/{lamp}/photo/{board.photos['approved']}")
    assert response.status == 200 and await response.read() == PNG
    assert response.content_type == "image/png"
    # Not allowed by the convener, another topic's (approved there), a private topic's,
    # nonsense: all 404.
    for path in (
        f"/t/{lamp}/photo/{board.photos['unapproved']}",
        f"/t/{lamp}/photo/{board.photos['elsewhere']}",
        f"/t/{lamp}/photo/{board.photos['private']}",
        f"/t/{board.topics['private'].number}/photo/{board.photos['private']}",
        f"/t/{lamp}/photo/abc",
        f"/t/{lamp}/photo/99999999999999",
    ):
        assert (await site.client.get(path)).status == 404, path
    # The hostile topic's own approved photo is served on its own page.
    hostile = board.topics["hostile"].number
    assert (await site.client.get(f"/t/{hostile}/photo/{board.photos['elsewhere']}")).status == 200


async def test_a_photo_list_that_is_not_ids_is_ignored(site: Site) -> None:
    lamp = site.board.topics["lamp"]
    async with transaction(site.services.sessions) as session:
        topic = await session.get(Topic, lamp.id)
        assert topic is not None
        topic.facts = {**topic.facts, "publish": {"photos": ["1", True, None]}}
    page = await site.page(f"/t/{lamp.number}")
    assert "/photo/" not in page


async def test_a_room_page_says_how_to_raise_a_topic(site: Site) -> None:
    page = await site.page("/r/V1")
    assert "<h1>一村议事室</h1>" in page
    assert f"https://t.me/{BOT}?start=r_V1" in page
    assert 'src="/r/V1/wechat.png"' in page
    assert titles(page) == ["村口路灯不亮"]
    assert '<meta property="og:title" content="一村议事室">' in page
    never_private(page)
    town = await site.page("/r/T1")
    assert "一村议事室" in town and "二村议事室" in town  # its rooms
    assert len(titles(town)) == 2
    district = await site.page("/r/D1")
    assert "小区雨天积水严重" in district  # in its results too
    await site.page("/r/NOPE", status=404)


async def test_a_room_page_shows_the_rooms_wechat_code(site: Site) -> None:
    response = await site.client.get("/r/V1/wechat.png")
    assert response.status == 200 and response.content_type == "image/png"
    image = Image.open(io.BytesIO(await response.read()))
    assert decode(image) == {"http://weixin.qq.com/q/r_V1"}
    again = await site.client.get("/r/V1/wechat.png")
    assert again.status == 200 and await again.read() == await response.read()
    assert len(site.fake.calls(QRCODE_CREATE)) == 1  # asked once
    assert (await site.client.get("/r/NOPE/wechat.png")).status == 404


async def test_pages_without_platforms_still_say_what_to_do(
    database_url: str, engine, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    services = build_services(load_config(path, env={}), clock=clock)
    board = await seed(make_session_factory(engine), clock, services.media_store)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        room = await (await client.get("/r/V1")).text()
        topic = await (await client.get(f"/t/{board.topics['lamp'].number}")).text()
        code = await client.get("/r/V1/wechat.png")
    finally:
        await client.close()
        await services.close()
    assert "t.me" not in room and "wechat.png" not in room
    assert "请到议事室现场扫描张贴的二维码" in room
    assert "t.me" not in topic and "扫描" in topic
    assert code.status == 404


async def test_private_topics_have_no_page(site: Site) -> None:
    await site.page(f"/t/{site.board.topics['private'].number}", status=404)
    await site.page("/t/" + "X" * 500, status=404)
