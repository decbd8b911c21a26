"""The review page behind a WeChat reviewer's template message: a signed, short-lived,
single-use link for one person and one topic, and every way of misusing it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, select

from bot.config import ConfigError, load_config
from bot.services import Services, build_services
from bot.web import create_app
from storage.db import make_session_factory, transaction
from storage.models import (
    Attachment,
    AuditEntry,
    ButtonRef,
    ChannelIdentity,
    OutboxMessage,
    RoleGrant,
    Topic,
)
from tests.fakes.wechat_api import CUSTOM_SEND, TEMPLATE_SEND, FakeWeChatAPI
from tests.world import ROUTES, World, build_world
from workflow.cards import BUTTON_PREFIX
from workflow.clock import FixedClock
from workflow.lifecycle import Role, State

BASE = "https://mashangyi.test"
OPENID = "oRv1ewErConvenerV1xxxxxxxxxx"
TEMPLATE_ID = "tmplReview0000000000000000000000000000000000"


@dataclass
class Site:
    world: World
    services: Services
    client: TestClient
    fake: FakeWeChatAPI

    async def get(self, url: str) -> ClientResponse:
        return await self.client.get(_local(url))

    async def post(self, url: str, **form: str) -> ClientResponse:
        return await self.client.post(_local(url), data=form)


def _local(url: str) -> str:
    """A link as sent (on public_base_url) → the same path and query on the test server."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


@pytest.fixture
async def site(database_url: str, engine, clock: FixedClock, tmp_path: Path) -> AsyncIterator[Site]:
    fake = FakeWeChatAPI()
    await fake.start()
    world = await build_world(make_session_factory(engine), clock)
    path = tmp_path / "c.toml"
    path.write_text(
        f'[server]\npublic_base_url = "{BASE}"\nsecret_key = "test-secret-key-0123456789"\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[wechat]\napp_id = "{fake.app_id}"\napp_secret = "{fake.app_secret}"\n'
        f'api_base_url = "{fake.base_url}"\ntemplate_id = "{TEMPLATE_ID}"\n',
        "utf-8",
    )
    services = build_services(load_config(path, env={}), clock=clock)
    world.lifecycle = services.lifecycle  # notices carry review links, as in production
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    yield Site(world, services, client, fake)
    await client.close()
    await services.close()
    await fake.close()


async def card(world: World, address: str) -> OutboxMessage:
    async with world.sessions() as session:
        return (
            await session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.address == address)
                .order_by(col(OutboxMessage.id).desc())
            )
        ).first()


async def link(site: Site, room: str = "V1", title: str = "运河步道增设公厕") -> tuple[Topic, str]:
    """A new topic in ``room`` and the review link its convener was sent."""
    topic = await site.world.open(room, title=title)
    message = await card(site.world, f"{room}:convener")
    assert message.topic_id == topic.id
    return topic, message.body["review_url"]


async def audit(world: World) -> list[tuple[str, str]]:
    async with world.sessions() as session:
        rows = await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))
        return [(r.action, r.subject.get("reason", "")) for r in rows]


async def unchanged(site: Site, topic: Topic) -> bool:
    """The topic is as it was and no review link has been used."""
    fresh = await site.world.reload(topic)
    async with site.world.sessions() as session:
        used = (
            await session.exec(select(ButtonRef).where(col(ButtonRef.used_at).is_not(None)))
        ).all()
    return (fresh.state, fresh.version, fresh.facts) == (
        topic.state,
        topic.version,
        topic.facts,
    ) and not used


def accept_form(topic: Topic) -> dict[str, str]:
    return {
        "action": "screen_accept",
        "topic": str(topic.id),
        "f.category": "协商议事",
        "f.reason": "涉及沿线居民共同利益",
    }


async def test_outside_the_window_the_reviewer_gets_a_template_linking_to_the_review_page(
    site: Site, clock: FixedClock
) -> None:
    world = site.world
    async with transaction(world.sessions) as session:  # the convener last wrote 3 days ago
        session.add(
            ChannelIdentity(
                person_id=world.person("V1", Role.CONVENER),
                channel="wechat",
                external_id=OPENID,
                last_inbound_at=clock.now() - timedelta(days=3),
            )
        )
    topic = await world.open("V1")
    assert await site.services.dispatcher().run_once()
    assert site.fake.calls(CUSTOM_SEND) == []
    (call,) = site.fake.calls(TEMPLATE_SEND)
    assert call.json["touser"] == OPENID
    url = call.json["url"]
    parts = urlsplit(url)
    assert url.startswith(f"{BASE}/review/") and set(parse_qs(parts.query)) == {"exp", "sig"}
    exp = int(parse_qs(parts.query)["exp"][0])
    assert exp == int((clock.now() + timedelta(hours=72)).timestamp())
    async with world.sessions() as session:
        ref = (
            await session.exec(
                select(ButtonRef).where(ButtonRef.token == parts.path.rsplit("/", 1)[1])
            )
        ).one()
    assert (ref.person_id, ref.topic_id, ref.action, ref.topic_version, ref.used_at) == (
        world.person("V1", Role.CONVENER),
        topic.id,
        "review_page",
        topic.version,
        None,
    )
    page = await site.get(url)
    assert page.status == 200 and topic.number in await page.text()


async def test_the_page_shows_the_card_and_a_form_per_action(site: Site) -> None:
    topic, url = await link(site)
    response = await site.get(url)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = await response.text()
    assert f"【待初审】{topic.number}" in page and "运河步道增设公厕" in page
    for action in ("screen_accept", "decline", "redirect", "transfer", "refer_to_parent"):
        assert f'name="action" value="{action}"' in page
    assert page.count('method="post"') == 5
    assert '<option value="提案或社情民意线索">' in page  # categories as a select
    assert '<textarea id="screen_accept-reason" name="f.reason"' in page
    assert '<option value="V2">二村议事室（V2）</option>' in page  # a nearby room
    assert 'name="f.to_room.code"' in page  # or any room by code
    assert await audit(site.world) == []
    assert await unchanged(site, topic)  # looking changes nothing, and uses nothing up


async def test_accept_with_category_and_reason_then_the_link_is_spent(site: Site) -> None:
    topic, url = await link(site)
    response = await site.post(url, **accept_form(topic))
    assert response.status == 200
    assert f"{topic.number}「运河步道增设公厕」，当前状态：待党组织审定" in await response.text()
    moved = await site.world.reload(topic)
    assert (moved.state, moved.category) == (State.AWAITING_APPROVAL, "协商议事")
    assert moved.facts["screen_accept"]["reason"] == "涉及沿线居民共同利益"

    again = await site.post(url, **accept_form(topic))
    assert again.status == 403 and "只能使用一次" in await again.text()
    opened = await site.get(url)
    assert opened.status == 403
    assert (await site.world.reload(topic)).version == moved.version  # nothing more
    assert await audit(site.world) == [
        ("review_link.refused", "used"),
        ("review_link.refused", "used"),
    ]


async def test_a_transfer_by_typed_room_code(site: Site) -> None:
    topic, url = await link(site)
    form = {"action": "transfer", "topic": str(topic.id), "f.to_room": "V2"}
    response = await site.post(url, **form, **{"f.to_room.code": "V3", "f.reason": "属三村"})
    assert response.status == 200
    assert (await site.world.reload(topic)).room_id == site.world.rooms["V3"]


async def test_a_wrong_answer_shows_the_form_again_and_keeps_the_link(site: Site) -> None:
    topic, url = await link(site)
    form = accept_form(topic) | {"f.reason": " "}
    response = await site.post(url, **form)
    assert response.status == 400
    page = await response.text()
    assert "理由" in page and 'name="action" value="screen_accept"' in page
    assert await unchanged(site, topic)
    assert await audit(site.world) == [("review_link.refused", "missing_field")]
    assert (await site.post(url, **accept_form(topic))).status == 200


def _with(url: str, **query: str) -> str:
    parts = urlsplit(url)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()} | query
    return parts.path + "?" + "&".join(f"{k}={v}" for k, v in params.items())


async def test_a_tampered_signature_is_refused(site: Site) -> None:
    topic, url = await link(site)
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    forged = _with(url, sig=("0" if sig[0] != "0" else "1") + sig[1:])
    longer = _with(url, exp=str(int(parse_qs(urlsplit(url).query)["exp"][0]) + 86400))
    for bad in (forged, longer, urlsplit(url).path):
        assert (await site.get(bad)).status == 403
        response = await site.post(bad, **accept_form(topic))
        assert response.status == 403 and "此链接无效" in await response.text()
    assert await unchanged(site, topic)
    assert await audit(site.world) == []  # a signature we did not make: logged, not audited


@pytest.mark.parametrize("sig", ["%C3%A9", "%C3%A9" * 64, "%FF", "%00", ""])
async def test_a_malformed_signature_is_a_403_not_a_crash(site: Site, sig: str) -> None:
    topic, url = await link(site)
    exp = parse_qs(urlsplit(url).query)["exp"][0]
    path = urlsplit(url).path
    for target in (f"{path}?exp=1&sig={sig}", f"{path}?exp={exp}&sig={sig}"):
        assert (await site.get(target)).status == 403
        assert (await site.get(target.replace("?", "/media/1?"))).status == 403
        response = await site.post(target, **accept_form(topic))
        assert response.status == 403 and "此链接无效" in await response.text()
    assert await unchanged(site, topic)
    assert await audit(site.world) == []


async def test_forged_links_write_no_rows_and_a_bounded_log(
    site: Site, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can send links we never signed, as many as they like: they must not be able
    to make the service write rows, nor flood its log. Refusals of a link we signed (used,
    expired) are still audited."""
    topic, url = await link(site)
    path, exp = urlsplit(url).path, parse_qs(urlsplit(url).query)["exp"][0]
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    forged = [
        _with(url, sig=("0" if sig[0] != "0" else "1") + sig[1:]),
        _with(url, exp=str(int(exp) + 1)),
        f"{path}?exp=1&sig=%C3%A9",
        f"{path}?exp=x&sig={sig}",
        path,
        "/review/" + "A" * 40 + f"?exp={exp}&sig={sig}",
    ]
    with caplog.at_level("INFO", logger="mashangyi.review_page"):
        for n in range(50):
            bad = forged[n % len(forged)]
            status = (
                (await site.post(bad, **accept_form(topic))).status
                if n % 2
                else (await site.get(bad)).status
            )
            assert status == 403
        logged = [r.getMessage() for r in caplog.records if r.name == "mashangyi.review_page"]
        assert await audit(site.world) == []
        assert 1 <= len(logged) <= 10 and all("bad_signature" in line for line in logged)
        # A minute later the log says how many it left out, and logs again.
        caplog.clear()
        clock.advance(timedelta(minutes=1))
        assert (await site.get(forged[0])).status == 403
        logged = [r.getMessage() for r in caplog.records if r.name == "mashangyi.review_page"]
        assert logged[0].startswith(f"{50 - 10} more like this left out")
        assert "bad_signature" in logged[1] and len(logged) == 2
    assert await audit(site.world) == []
    # A link we signed, refused: audited as before (used, then expired).
    assert (await site.post(url, **accept_form(topic))).status == 200
    assert (await site.get(url)).status == 403
    clock.advance(timedelta(hours=72))
    assert (await site.get(url)).status == 410
    assert await audit(site.world) == [
        ("review_link.refused", "used"),
        ("review_link.refused", "expired"),
    ]


async def test_an_expired_link_is_refused(site: Site, clock: FixedClock) -> None:
    topic, url = await link(site)
    clock.advance(timedelta(hours=72))  # the moment it expires
    response = await site.post(url, **accept_form(topic))
    assert response.status == 410 and "已过期" in await response.text()
    assert (await site.get(url)).status == 410
    assert await unchanged(site, topic)
    assert await audit(site.world) == [("review_link.refused", "expired")] * 2


async def test_a_link_cannot_be_turned_to_another_topic_or_person(site: Site) -> None:
    topic, url = await link(site)
    other, other_url = await link(site, title="小区门口积水")
    # The form pointed at another topic (one the same convener may review).
    response = await site.post(url, **accept_form(other))
    assert response.status == 403 and "此链接无效" in await response.text()
    # Another person's token (V2's convener) under this link's signature.
    _, v2_url = await link(site, "V2")
    spliced = urlsplit(v2_url).path + "?" + urlsplit(url).query
    assert (await site.post(spliced, **accept_form(topic))).status == 403
    # A chat button's token, even signed with our key, is not a review link.
    chat = (await card(site.world, "V1:convener")).body["buttons"][0][1]
    token = chat.removeprefix(BUTTON_PREFIX)
    assert site.services.review_links is not None
    signed = site.services.review_links.url(token, int(site.world.clock.now().timestamp()) + 60)
    assert (await site.post(signed, **accept_form(other))).status == 403
    assert (await site.get(signed)).status == 403
    assert await unchanged(site, topic) and await unchanged(site, other)
    assert await audit(site.world) == [
        ("review_link.refused", "forged"),
        ("review_link.refused", "forged"),
        ("review_link.refused", "forged"),
    ]
    assert (await site.post(other_url, **accept_form(other))).status == 200


async def test_a_topic_handled_meanwhile_is_refused_as_stale(site: Site) -> None:
    topic, url = await link(site)
    await site.world.apply(
        topic,
        "decline",
        site.world.person("V1", Role.CONVENER),
        reason="重复",
        contact_record="电话",
    )
    handled = await site.world.reload(topic)
    response = await site.get(url)
    assert response.status == 403 and "已被处理，当前状态：不予受理" in await response.text()
    assert (await site.post(url, **accept_form(topic))).status == 403
    assert await unchanged(site, handled)
    assert await audit(site.world) == [("review_link.refused", "stale")] * 2


async def test_a_revoked_role_is_refused(site: Site, clock: FixedClock) -> None:
    topic, url = await link(site)
    async with transaction(site.world.sessions) as session:
        grant = (
            await session.exec(
                select(RoleGrant).where(
                    RoleGrant.person_id == site.world.person("V1", Role.CONVENER),
                    RoleGrant.role == Role.CONVENER,
                )
            )
        ).one()
        grant.revoked_at = clock.now()
    response = await site.get(url)
    assert response.status == 403 and "没有处理该议题的权限" in await response.text()
    response = await site.post(url, **accept_form(topic))
    assert response.status == 403 and "不能对该议题进行「受理」操作" in await response.text()
    assert await unchanged(site, topic)
    assert await audit(site.world) == [("review_link.refused", "not_permitted")] * 2


async def test_a_hostile_title_is_escaped(site: Site) -> None:
    topic, url = await link(site, title="<script>alert(1)</script>\"'&")
    page = await (await site.get(url)).text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    done = await (await site.post(url, **accept_form(topic))).text()
    assert "<script>" not in done and "&lt;script&gt;" in done


async def test_only_post_changes_anything(site: Site) -> None:
    topic, url = await link(site)
    response = await site.client.put(_local(url), data=accept_form(topic))
    assert response.status == 405
    assert await unchanged(site, topic)


async def test_the_same_link_used_twice_at_once_has_one_effect(site: Site) -> None:
    topic, url = await link(site)
    first, second = await asyncio.gather(
        site.post(url, **accept_form(topic)), site.post(url, **accept_form(topic))
    )
    assert sorted([first.status, second.status])[0] == 200
    assert [first.status, second.status].count(200) == 1
    moved = await site.world.reload(topic)
    assert (moved.state, moved.version) == (State.AWAITING_APPROVAL, topic.version + 1)
    assert len(await audit(site.world)) == 1


def test_the_secret_key_is_configurable_and_otherwise_random(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.services import build_review_links

    config = load_config(None, env={"MASHANGYI_SERVER_SECRET_KEY": "from-the-environment"})
    assert build_review_links(config).secret == b"from-the-environment"
    assert build_review_links(config).lifetime == timedelta(hours=72)
    with caplog.at_level("WARNING"):
        one, two = (
            build_review_links(load_config(None, env={})),
            build_review_links(load_config(None, env={"MASHANGYI_REVIEW_LINK_HOURS": "24"})),
        )
    assert one.secret != two.secret and len(one.secret) == 32
    assert two.lifetime == timedelta(hours=24)
    assert caplog.text == ""  # no WeChat account: nobody is sent a review link
    with pytest.raises(ConfigError, match=r"^server\.secret_key: required when wechat\.app_id"):
        build_review_links(load_config(None, env={"MASHANGYI_WECHAT_APP_ID": "wx1"}))


async def test_photos_and_recordings_are_shown_on_the_review_page(
    site: Site, clock: FixedClock
) -> None:
    world = site.world
    resident = world.person("-", "resident")
    async with transaction(world.sessions) as session:
        photo = Attachment(
            kind="image",
            channel="console",
            source_ref="p1",
            status="stored",
            storage_key="t/p1.jpg",
            content_type="image/jpeg",
            uploaded_by_id=resident,
            created_at=clock.now(),
        )
        session.add(photo)
        await session.flush()
        photo_id = photo.id
    await site.services.media_store.put("t/p1.jpg", b"\xff\xd8 photo")
    topic = await world.open("V1", attachment_ids=[photo_id], uploader_id=resident)
    message = await card(world, "V1:convener")
    url = message.body["review_url"]
    assert f"查看照片和语音：{url}" in message.body["text"]  # the chat card points there
    page = await (await site.get(url)).text()
    media_path = f"/review/{url.split('/review/')[1].split('?')[0]}/media/{photo_id}"
    assert f'<img src="{media_path}?' in page
    shown = await site.get(_with(url.replace("?", f"/media/{photo_id}?")))
    assert (shown.status, await shown.read()) == (200, b"\xff\xd8 photo")
    assert shown.headers["Content-Type"] == "image/jpeg"
    # Another topic's attachment, or a tampered link, shows nothing.
    other = await world.open("V1", title="别的议题")
    async with transaction(world.sessions) as session:
        stray = Attachment(
            kind="image",
            channel="console",
            source_ref="p2",
            status="stored",
            storage_key="t/p1.jpg",
            topic_id=other.id,
            created_at=clock.now(),
        )
        session.add(stray)
        await session.flush()
        stray_id = stray.id
    assert (await site.get(url.replace("?", f"/media/{stray_id}?"))).status == 404
    assert (
        await site.get(_with(url.replace("?", f"/media/{photo_id}?"), sig="0" * 64))
    ).status == 403
    assert (await world.reload(topic)).state == "submitted"  # looking changed nothing


async def test_publishing_on_the_page_offers_the_photos_and_the_default_close_date(
    site: Site, clock: FixedClock
) -> None:
    world = site.world
    resident = world.person("-", "resident")
    async with transaction(world.sessions) as session:
        shots = [
            Attachment(
                kind="image",
                channel="console",
                source_ref=f"p{n}",
                status="stored",
                storage_key=f"t/p{n}.jpg",
                content_type="image/jpeg",
                uploaded_by_id=resident,
                created_at=clock.now(),
            )
            for n in range(2)
        ]
        session.add_all(shots)
        await session.flush()
        first, second = (s.id for s in shots)
    topic = await world.open("V1", attachment_ids=[first, second], uploader_id=resident)
    topic = await world.walk(topic, ROUTES[State.APPROVED])
    message = await card(world, "V1:convener")
    assert message.kind == "topic.approved"
    url = message.body["review_url"]
    page = await (await site.get(url)).text()
    assert (
        '<input id="publish-suggestions_close" type="date" name="f.suggestions_close" '
        'value="2026-03-09">' in page
    )
    assert f'name="f.photos" value="{first}"> 第1张' in page
    assert f'name="f.photos" value="{second}"> 第2张' in page
    form = {"action": "publish", "topic": str(topic.id), "f.suggestions_close": "2026-03-12"}
    response = await site.client.post(_local(url), data=[*form.items(), ("f.photos", str(second))])
    assert response.status == 200
    topic = await world.reload(topic)
    assert topic.state == State.PUBLICIZED
    assert topic.facts["publish"] == {"suggestions_close": "2026-03-12", "photos": [second]}
