"""WeChat web authorization for page actions (issue 12, item 3), against the fake's authorize
page and code exchange: the round trip names the person in a signed cookie; a forged,
replayed or stale state, a bad code, a tampered cookie and an open redirect are refused and
name nobody."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from bot.config import load_config
from bot.services import Services, build_services
from bot.web import create_app
from bot.web.web_auth import COOKIE
from storage.db import make_session_factory
from storage.models import ChannelIdentity
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
