"""Pushes on WeChat, through the real services, webhook and dispatcher against the fake
WeChat API: consents recorded from the pop-up events (a re-delivery is one consent), a
customer-service message inside the 48-hour window, outside it a subscription notification
for who consented (one-time consents used once; 43101 falls back), else the template
message, else undeliverable; 45009 pausing an endpoint; the unfollow link that works."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlmodel import col, select

from bot.services import Services
from notices.message import OutboundMessage
from storage.db import transaction
from storage.models import ChannelIdentity, OutboxMessage, Person, Topic
from storage.participation import Follow, SubscriptionConsent
from tests import test_wechat
from tests.fakes.wechat_api import CUSTOM_SEND, SUBSCRIBE_SEND, TEMPLATE_SEND
from tests.test_wechat import OPENID, Harness, Start, payload
from tests.world import World, build_world
from workflow.clock import CHINA, FixedClock
from workflow.lifecycle import State
from workflow.payloads import FOLLOW_TOPIC, Setting

# The WeChat tests' fixtures, used here by name.
fake, start = test_wechat.fake, test_wechat.start

NOTIFY = "Vw3sUbSc_notify-Result_0123456789abcdefXYZ"  # the pop-up's accepted template


async def setup(start: Start, **wechat: str) -> tuple[Harness, World]:
    h = await start(subscribe_template_id=NOTIFY, **wechat)
    h.services.dialogs = h.dialogs.inner  # type: ignore[assignment]
    world = await build_world(h.services.sessions, h.clock)
    world.lifecycle = h.services.lifecycle
    return h, world


async def follower(world: World, topic: Topic, openid: str = OPENID, *, wrote: bool) -> int:
    """A WeChat person following ``topic``; ``wrote``: within the 48-hour window."""
    now = world.clock.now()
    async with transaction(world.sessions) as session:
        found = (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == openid))
        ).first()
        if found is None:
            person = Person(display_name="居民")
            session.add(person)
            await session.flush()
            assert person.id is not None
            found = ChannelIdentity(person_id=person.id, channel="wechat", external_id=openid)
        found.last_inbound_at = now - (timedelta(hours=1) if wrote else timedelta(days=3))
        session.add(found)
        session.add(Follow(person_id=found.person_id, topic_id=topic.id, created_at=now))
        return found.person_id


async def publicized(h: Harness, world: World) -> Topic:
    topic = await world.at(State.RESULTS_PUBLISHED)
    await h.services.push_expander().run_once()  # its earlier pushes went to nobody
    return topic


async def progress(h: Harness, world: World, topic: Topic, note: str) -> None:
    await world.apply(topic, "record_progress", world.person("V1", "convener"), note=note)
    await h.services.push_expander().run_once()
    await h.services.dispatcher().drain()


async def pushes(services: Services) -> list[OutboxMessage]:
    async with services.sessions() as session:
        rows = await session.exec(
            select(OutboxMessage)
            .where(col(OutboxMessage.kind).startswith("push."))
            .order_by(col(OutboxMessage.id))
        )
        return list(rows)


async def consents(services: Services) -> list[SubscriptionConsent]:
    async with services.sessions() as session:
        rows = await session.exec(select(SubscriptionConsent).order_by(col(SubscriptionConsent.id)))
        return list(rows)


async def test_a_popup_accepted_is_one_consent_however_often_it_is_delivered(
    start: Start,
) -> None:
    h, _ = await setup(start)
    for _ in range(3):  # WeChat delivers it again when the answer is slow
        response = await h.post(payload("subscribe_msg_popup_event"))
        assert (response.status, await response.text()) == (200, "success")
    found = await consents(h.services)
    assert [(c.openid, c.template_id, c.long_term, c.used_at) for c in found] == [
        (OPENID, NOTIFY, False, None)
    ]  # the rejected template is not recorded
    # Someone who never wrote (the pop-up is on a page) has a person now.
    async with h.services.sessions() as session:
        identity = (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == OPENID))
        ).one()
    assert identity.person_id == found[0].person_id
    # Turned off later in the settings: revoked.
    await h.post(payload("subscribe_msg_change_event"))
    assert (await consents(h.services))[0].revoked_at is not None


async def test_outside_the_window_a_consent_carries_one_push_then_the_template(
    start: Start,
) -> None:
    h, world = await setup(start)
    topic = await publicized(h, world)
    await follower(world, topic, wrote=False)
    await h.post(payload("subscribe_msg_popup_event"))

    await progress(h, world, topic, "已完成设计")
    (sent,) = h.fake.calls(SUBSCRIBE_SEND)
    body = sent.json
    assert body["touser"] == OPENID and body["template_id"] == NOTIFY
    assert body["data"]["character_string1"]["value"] == topic.number
    summary = body["data"]["thing2"]["value"]
    assert len(summary) <= 20 and summary.startswith("您关注的议题")
    assert "first" not in body["data"] and "remark" not in body["data"]
    assert re.fullmatch(r"https?://.*/unfollow/t/\d+/\d+\?exp=\d+&sig=[0-9a-f]{64}", body["page"])
    assert (await consents(h.services))[0].used_at is not None
    assert not h.fake.calls(TEMPLATE_SEND) and not h.fake.calls(CUSTOM_SEND)

    await progress(h, world, topic, "已开工")  # the one-time consent is used up
    assert len(h.fake.calls(SUBSCRIBE_SEND)) == 1
    (template,) = h.fake.calls(TEMPLATE_SEND)
    assert template.json["url"].split("?")[0] == body["page"].split("?")[0]
    assert {r.status for r in await pushes(h.services)} == {"sent"}


async def test_43101_falls_back_to_the_template_and_the_consent_is_given_up(
    start: Start,
) -> None:
    h, world = await setup(start)
    topic = await publicized(h, world)
    await follower(world, topic, wrote=False)
    await h.post(payload("subscribe_msg_popup_event"))
    h.fake.script(SUBSCRIBE_SEND, errcode=43101, errmsg="user refuse to accept the msg")
    await progress(h, world, topic, "已完成设计")
    assert len(h.fake.calls(SUBSCRIBE_SEND)) == 1 and len(h.fake.calls(TEMPLATE_SEND)) == 1
    assert (await consents(h.services))[0].revoked_at is not None
    assert [r.status for r in await pushes(h.services)] == ["sent"]


async def test_45009_pauses_the_endpoint_until_the_next_day_without_burning_retries(
    start: Start, clock: FixedClock
) -> None:
    h, world = await setup(start)
    topic = await publicized(h, world)
    await follower(world, topic, wrote=False)
    await follower(world, topic, "oSecondFollower000000000000a", wrote=False)
    h.fake.script(TEMPLATE_SEND, errcode=45009, errmsg="reach max api daily quota limit")
    await progress(h, world, topic, "已完成设计")
    rows = await pushes(h.services)
    tomorrow = datetime(2026, 3, 3, 0, 5, tzinfo=CHINA)
    assert [(r.status, r.attempts, r.not_before) for r in rows] == [("pending", 0, tomorrow)] * 2
    assert len(h.fake.calls(TEMPLATE_SEND)) == 1  # the second did not even call
    clock.set(tomorrow)
    await h.services.dispatcher().drain()
    assert {r.status for r in await pushes(h.services)} == {"sent"}
    assert len(h.fake.calls(TEMPLATE_SEND)) == 3


async def test_without_consent_or_template_a_push_is_undeliverable_with_the_reason(
    start: Start,
) -> None:
    h, world = await setup(start, template_id="")
    topic = await publicized(h, world)
    await follower(world, topic, wrote=False)
    await progress(h, world, topic, "已完成设计")
    (row,) = await pushes(h.services)
    assert row.status == "dead" and "undeliverable" in (row.last_error or "")
    assert not h.fake.calls(SUBSCRIBE_SEND) and not h.fake.calls(TEMPLATE_SEND)


async def test_inside_the_window_a_menu_with_the_unfollow_option_and_45015_falls_back(
    start: Start,
) -> None:
    h, world = await setup(start)
    topic = await publicized(h, world)
    await follower(world, topic, wrote=True)
    await progress(h, world, topic, "已完成设计")
    (menu,) = h.fake.calls(CUSTOM_SEND)
    assert menu.json["msgtype"] == "msgmenu"
    assert menu.json["msgmenu"]["list"] == [
        {"id": FOLLOW_TOPIC.build(Setting(topic.id, False)), "content": "取消关注"}
    ]
    h.fake.script(CUSTOM_SEND, errcode=45015, errmsg="response out of time limit")
    await progress(h, world, topic, "已开工")
    assert len(h.fake.calls(TEMPLATE_SEND)) == 1  # no consent: the template


async def test_the_unfollow_link_asks_first_then_unfollows_and_a_forged_one_does_nothing(
    start: Start,
) -> None:
    h, world = await setup(start)
    topic = await publicized(h, world)
    person = await follower(world, topic, wrote=False)
    await progress(h, world, topic, "已完成设计")
    link = h.fake.calls(TEMPLATE_SEND)[0].json["url"]
    path = link.removeprefix(h.services.config.server.public_base_url)

    async def following() -> bool:
        async with h.services.sessions() as session:
            row = (
                await session.exec(
                    select(Follow).where(Follow.person_id == person, Follow.topic_id == topic.id)
                )
            ).one()
        return row.ended_at is None

    page = await h.client.get(path)
    html = await page.text()
    assert page.status == 200 and "取消关注" in html and f"/t/{topic.number}" in html
    assert await following()  # looking changes nothing
    forged = re.sub(r"sig=[0-9a-f]{8}", "sig=00000000", path)
    other = re.sub(r"/unfollow/t/(\d+)/\d+", r"/unfollow/t/\1/999999", path)
    for bad in (forged, other):
        refused = await h.client.post(bad)
        assert refused.status == 403 and "此链接无效" in await refused.text()
    assert await following()
    done = await h.client.post(path)
    assert done.status == 200 and "已取消关注" in await done.text()
    assert not await following()
    again = await h.client.post(path)
    assert "您已不再关注" in await again.text()
    await progress(h, world, topic, "已开工")
    assert len(h.fake.calls(TEMPLATE_SEND)) == 1  # no longer told


@pytest.mark.parametrize("long_term", [True, False])
async def test_a_long_term_consent_is_kept_only_where_the_account_has_it(
    start: Start, long_term: bool
) -> None:
    h, world = await setup(start, subscribe_long_term="true" if long_term else "false")
    topic = await publicized(h, world)
    await follower(world, topic, wrote=False)
    await h.post(payload("subscribe_msg_popup_event"))
    await progress(h, world, topic, "一")
    await progress(h, world, topic, "二")
    assert len(h.fake.calls(SUBSCRIBE_SEND)) == (2 if long_term else 1)
    rows = await pushes(h.services)
    assert len(rows) == 2 and all(OutboundMessage.from_json(r.body).unfollow_url for r in rows)
