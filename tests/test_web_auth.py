"""WeChat web authorization for page actions (issue 12, item 3), against the fake's authorize
page and code exchange: the round trip names the person in a signed cookie; a forged,
replayed or stale state, a bad code, a tampered cookie and an open redirect are refused and
name nobody."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, select

from bot.config import load_config
from bot.services import Services, build_services
from bot.web import create_app
from bot.web.web_auth import COOKIE
from storage.db import make_session_factory
from storage.models import ChannelIdentity
from storage.participation import Follow, Like, Suggestion
from storage.webauth import WebAuthState
from tests.fakes.wechat_api import OAUTH_TOKEN, FakeWeChatAPI
from tests.public_seed import Board, seed
from workflow.clock import FixedClock

BASE = "https://mashangyi.test"
OPENID = "oResident0000000000000000001"
WECHAT_UA = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50.2701 NetType/WIFI"


@dataclass
class Site:
    board: Board
    services: Services
    client: TestClient
    fake: FakeWeChatAPI
    clock: FixedClock

    @property
    def lamp(self) -> str:
        return f"/t/{self.board.topics['lamp'].number}"

    async def get(self, path: str, **kw: object) -> ClientResponse:
        return await self.client.get(path, allow_redirects=False, **kw)  # type: ignore[arg-type]

    async def authorize(self, next_path: str) -> str:
        """Start a round trip: the address of WeChat's authorize page we are sent to."""
        response = await self.get(f"/auth/wechat?next={next_path}")
        assert response.status == 302, await response.text()
        return response.headers["Location"]

    async def wechat_redirects(self, authorize: str) -> str:
        """WeChat's page (the fake) sends the browser back: our callback's local path."""
        async with (
            self.fake_session() as http,
            http.get(authorize.split("#")[0], allow_redirects=False) as response,
        ):
            assert response.status == 302, await response.text()
            back = urlsplit(response.headers["Location"])
        assert f"{back.scheme}://{back.netloc}" == BASE
        return f"{back.path}?{back.query}"

    def fake_session(self):  # type: ignore[no-untyped-def]
        import aiohttp

        return aiohttp.ClientSession()

    async def sign_in(self, openid: str = OPENID) -> ClientResponse:
        self.fake.browser_openid = openid
        callback = await self.wechat_redirects(await self.authorize(self.lamp))
        return await self.get(callback)


@pytest.fixture
async def site(database_url: str, engine, clock: FixedClock, tmp_path: Path) -> AsyncIterator[Site]:
    fake = FakeWeChatAPI()
    await fake.start()
    path = tmp_path / "c.toml"
    path.write_text(
        f'[server]\npublic_base_url = "{BASE}"\nsecret_key = "test-secret-key-0123456789"\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[wechat]\napp_id = "{fake.app_id}"\napp_secret = "{fake.app_secret}"\n'
        f'api_base_url = "{fake.base_url}"\noauth_base_url = "{fake.base_url}"\n',
        "utf-8",
    )
    services = build_services(load_config(path, env={}), clock=clock)
    board = await seed(make_session_factory(engine), clock, services.media_store)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    yield Site(board, services, client, fake, clock)
    await client.close()
    await services.close()
    await fake.close()


async def identities(site: Site) -> list[str]:
    async with site.services.sessions() as session:
        rows = await session.exec(
            select(ChannelIdentity.external_id).where(ChannelIdentity.channel == "wechat")
        )
        return list(rows.all())


async def test_the_round_trip_names_the_person_in_a_signed_cookie(site: Site) -> None:
    authorize = await site.authorize(site.lamp)
    parts = urlsplit(authorize)
    assert authorize.startswith(site.fake.base_url + "connect/oauth2/authorize?")
    assert parts.fragment == "wechat_redirect"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["appid"] == site.fake.app_id
    assert query["redirect_uri"] == f"{BASE}/auth/wechat/callback"
    assert (query["response_type"], query["scope"]) == ("code", "snsapi_base")
    state = query["state"]
    async with site.services.sessions() as session:
        stored = (await session.exec(select(WebAuthState))).one()
    assert stored.state_hash != state and state not in stored.state_hash  # only its hash
    assert stored.used_at is None

    site.fake.browser_openid = OPENID
    back = await site.get(await site.wechat_redirects(authorize))
    assert back.status == 302 and back.headers["Location"] == site.lamp
    cookie = back.cookies[COOKIE]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
    assert OPENID in cookie.value  # the cookie names this openid, signed
    assert await identities(site) == [OPENID]  # a person for the openid
    exchange = site.fake.calls(OAUTH_TOKEN)[0].query
    assert exchange["grant_type"] == "authorization_code" and exchange["secret"]


async def test_a_known_openid_is_the_same_person(site: Site) -> None:
    await site.sign_in()
    site.client.session.cookie_jar.clear()
    await site.sign_in()
    assert await identities(site) == [OPENID]


async def test_a_replayed_state_is_refused(site: Site) -> None:
    site.fake.browser_openid = OPENID
    callback = await site.wechat_redirects(await site.authorize(site.lamp))
    assert (await site.get(callback)).status == 302
    site.client.session.cookie_jar.clear()
    again = await site.get(callback)
    assert again.status == 403 and COOKIE not in again.cookies
    assert "已经用过或已过期" in await again.text()
    # And with a fresh code but the used state (the state, not the code, is what is replayed).
    code_only = (
        callback.split("state=")[0] + "state=" + parse_qs(urlsplit(callback).query)["state"][0]
    )
    assert (await site.get(code_only)).status == 403


async def test_a_forged_state_or_code_is_refused(site: Site) -> None:
    site.fake.browser_openid = OPENID
    callback = await site.wechat_redirects(await site.authorize(site.lamp))
    code = parse_qs(urlsplit(callback).query)["code"][0]
    forged = await site.get(f"/auth/wechat/callback?code={code}&state=madeup")
    assert forged.status == 403 and COOKIE not in forged.cookies
    # The right state with a code WeChat never gave: the state is used up, nobody named.
    state = parse_qs(urlsplit(callback).query)["state"][0]
    bad_code = await site.get(f"/auth/wechat/callback?code=NOPE&state={state}")
    assert bad_code.status == 403 and COOKIE not in bad_code.cookies
    assert (await site.get(callback)).status == 403  # that state is gone now
    assert await identities(site) == []


async def test_a_stale_state_is_refused(site: Site) -> None:
    site.fake.browser_openid = OPENID
    callback = await site.wechat_redirects(await site.authorize(site.lamp))
    site.clock.advance(timedelta(minutes=11))
    assert (await site.get(callback)).status == 403
    assert await identities(site) == []


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/t/1", "/review/x", "/t/a/../../x", ""]
)
async def test_only_our_topic_pages_can_be_returned_to(site: Site, target: str) -> None:
    assert (await site.get(f"/auth/wechat?next={target}")).status == 404


async def test_a_topic_page_in_wechat_offers_to_sign_in_then_knows_the_person(site: Site) -> None:
    wechat = {"User-Agent": WECHAT_UA}
    page = await (await site.get(site.lamp, headers=wechat)).text()
    assert f'href="/auth/wechat?next={site.lamp}"' in page
    # The cookie is Secure (the public address is https): the test client, on http, is
    # handed it by hand, as a browser on https would send it.
    value = (await site.sign_in()).cookies[COOKIE].value
    signed_in = {**wechat, "Cookie": f"{COOKIE}={value}"}
    page = await (await site.get(site.lamp, headers=signed_in)).text()
    assert "/auth/wechat?next=" not in page and "已通过微信确认身份" in page
    # A tampered cookie (another person id, same signature) names nobody.
    person, rest = value.split(".", 1)
    tampered = f"{int(person) + 1}.{rest}"
    page = await (
        await site.get(site.lamp, headers={**wechat, "Cookie": f"{COOKIE}={tampered}"})
    ).text()
    assert "已通过微信确认身份" not in page and "/auth/wechat?next=" in page


async def test_outside_wechat_there_is_no_sign_in(site: Site) -> None:
    page = await (await site.get(site.lamp)).text()
    assert "/auth/wechat" not in page
    assert f'src="{site.lamp}/wechat.png"' in page  # the bot's code for this topic instead


# -- page actions (bot/web/page_actions.py) ------------------------------------------------


async def signed_in(site: Site, openid: str = OPENID) -> dict[str, str]:
    """Headers of WeChat's browser carrying the session cookie of ``openid``."""
    value = (await site.sign_in(openid)).cookies[COOKIE].value
    return {"User-Agent": WECHAT_UA, "Cookie": f"{COOKIE}={value}"}


async def form_of(site: Site, headers: dict[str, str], path: str | None = None) -> dict[str, str]:
    page = await (await site.get(path or site.lamp, headers=headers)).text()
    token = re.search(r'name="token" value="([^"]+)"', page)
    nonce = re.search(r'name="nonce" value="([^"]+)"', page)
    assert token is not None, page
    return {"token": token.group(1), "nonce": nonce.group(1) if nonce else ""}


async def post(site: Site, headers: dict[str, str], **form: str) -> ClientResponse:
    return await site.client.post(
        f"{site.lamp}/act", data=form, headers=headers, allow_redirects=False
    )


async def tally(site: Site) -> tuple[int, int, list[tuple[str, str]]]:
    """Active likes and follows of the lamp topic, and its suggestions (body, status)."""
    topic_id = site.board.topics["lamp"].id
    async with site.services.sessions() as session:
        likes = (
            await session.exec(select(Like).where(Like.topic_id == topic_id, col(Like.active)))
        ).all()
        follows = (
            await session.exec(
                select(Follow).where(Follow.topic_id == topic_id, col(Follow.ended_at).is_(None))
            )
        ).all()
        suggestions = (
            await session.exec(
                select(Suggestion)
                .where(Suggestion.topic_id == topic_id)
                .order_by(col(Suggestion.id))
            )
        ).all()
    return len(likes), len(follows), [(s.body, s.status) for s in suggestions]


async def test_like_and_follow_from_the_page_once_whatever_the_taps(site: Site) -> None:
    headers = await signed_in(site)
    form = await form_of(site, headers)
    likes, follows, _ = await tally(site)
    for _ in range(2):  # a double tap
        response = await post(site, headers, action="like", token=form["token"])
        assert response.status == 303 and response.headers["Location"].startswith(site.lamp)
    assert (await tally(site))[:2] == (likes + 1, follows)
    page = await (await site.get(site.lamp, headers=headers)).text()
    assert "取消点赞" in page and f"点赞 <strong>{likes + 1}</strong>" in page
    await post(site, headers, action="follow", token=form["token"])
    await post(site, headers, action="follow", token=form["token"])
    assert (await tally(site))[:2] == (likes + 1, follows + 1)
    await post(site, headers, action="unlike", token=form["token"])
    await post(site, headers, action="unfollow", token=form["token"])
    assert (await tally(site))[:2] == (likes, follows)


async def test_suggest_from_the_page(site: Site) -> None:
    headers = await signed_in(site)
    before = (await tally(site))[2]
    form = await form_of(site, headers)
    body = "路口装两盏灯<script>alert(1)</script>"
    for _ in range(2):  # the same form sent twice: one suggestion
        response = await post(site, headers, action="suggest", body=body, **form)
        assert response.status == 303
        assert response.headers["Location"] == f"{site.lamp}?said=ok#participate"
    assert (await tally(site))[2] == [*before, (body, "visible")]
    page = await (await site.get(site.lamp)).text()
    assert "路口装两盏灯&lt;script&gt;" in page and "<script>alert(1)" not in page
    # Over 500 characters: refused with the limit, nothing stored.
    form = await form_of(site, headers)
    long = await post(site, headers, action="suggest", body="长" * 501, **form)
    assert long.status == 409 and "500" in await long.text()
    assert len((await tally(site))[2]) == len(before) + 1


async def test_a_sensitive_suggestion_waits_for_the_convener(
    database_url: str, engine, clock: FixedClock, tmp_path: Path
) -> None:
    fake = FakeWeChatAPI()
    await fake.start()
    path = tmp_path / "c.toml"
    path.write_text(
        f'[server]\npublic_base_url = "{BASE}"\nsecret_key = "test-secret-key-0123456789"\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[wechat]\napp_id = "{fake.app_id}"\napp_secret = "{fake.app_secret}"\n'
        f'api_base_url = "{fake.base_url}"\noauth_base_url = "{fake.base_url}"\n'
        '[moderation]\nsensitive_words = ["敏感"]\n',
        "utf-8",
    )
    services = build_services(load_config(path, env={}), clock=clock)
    board = await seed(make_session_factory(engine), clock, services.media_store)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    site = Site(board, services, client, fake, clock)
    try:
        headers = await signed_in(site)
        form = await form_of(site, headers)
        response = await post(site, headers, action="suggest", body="有点敏感的话", **form)
        assert response.headers["Location"] == f"{site.lamp}?said=held#participate"
        mine = await (await site.get(response.headers["Location"], headers=headers)).text()
        assert "正在等待审核" in mine
        assert "有点敏感的话" not in await (await site.get(site.lamp)).text()
        assert (await tally(site))[2][-1] == ("有点敏感的话", "held")
    finally:
        await client.close()
        await services.close()
        await fake.close()


async def test_forged_page_actions_change_nothing(site: Site) -> None:
    mine = await signed_in(site)
    form = await form_of(site, mine)
    other_openid = "oNeighbour00000000000000002"
    theirs = await signed_in(site, other_openid)
    their_form = await form_of(site, theirs)
    before = await tally(site)
    value = mine["Cookie"].split("=", 1)[1]
    person, rest = value.split(".", 1)
    forged = {
        "no cookie": ({"User-Agent": WECHAT_UA}, form["token"], {}),
        "tampered cookie": (
            {**mine, "Cookie": f"{COOKIE}={int(person) + 1}.{rest}"},
            form["token"],
            {},
        ),
        "another person's token": (mine, their_form["token"], {}),
        "another person's openid": (mine, form["token"], {"openid": other_openid}),
        "no token": (mine, "", {}),
    }
    for name, (headers, token, extra) in forged.items():
        for action in ("like", "follow"):
            response = await post(site, headers, action=action, token=token, **extra)
            assert response.status == 403, name
        response = await post(
            site, headers, action="suggest", body="伪造的建议", token=token,
            nonce=form["nonce"], **extra,
        )  # fmt: skip
        assert response.status == 403, name
    # The token of one topic does not act on another.
    other = site.board.topics["hostile"].number
    response = await site.client.post(
        f"/t/{other}/act", data={"action": "like", "token": form["token"]}, headers=mine,
        allow_redirects=False,
    )  # fmt: skip
    assert response.status == 403
    assert await tally(site) == before
    # A topic that is not public has no actions at all.
    private = site.board.topics["private"].number
    response = await site.client.post(
        f"/t/{private}/act", data={"action": "like", "token": form["token"]}, headers=mine,
        allow_redirects=False,
    )  # fmt: skip
    assert response.status in (403, 404)
