"""A reviewer's card shows what they decide on (issue 11): the Party secretary's approval
card the convener's category and reason, the outcome-review card the consensus. Through the
real dialogs and the Telegram webhook; a long text is shortened to fit one message, never
left out. (WeChat: tests/test_review_wechat.py.)"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlmodel import select

from bot.pieces import utf16_units
from bot.services import Services
from bot.telegram import TEXT_LIMIT
from storage.db import transaction
from storage.models import ChannelIdentity, Topic
from tests import test_review_telegram as tg
from tests.fakes.telegram_api import FakeBotAPI
from tests.test_telegram import Resident
from tests.world import FIELDS
from workflow.permissions import load_actor

# The channel tests' fixtures, used here by name.
client, config_path, fake, services = tg.client, tg.config_path, tg.fake, tg.services

REASON = "涉及小区居民共同利益"


async def accept(convener: Any, reason: str = REASON) -> None:
    await convener.press("受理")
    await convener.press("协商议事")
    await convener.say(reason)


async def take(services: Services, user: str, actions: list[str]) -> None:
    """Steps between the ones under test, taken as the person with Telegram ``user``."""
    async with transaction(services.sessions) as session:
        person_id = (
            await session.exec(
                select(ChannelIdentity.person_id).where(ChannelIdentity.external_id == user)
            )
        ).one()
        topic = (await session.exec(select(Topic))).one()
        actor = await load_actor(session, person_id)
        for action in actions:
            await services.lifecycle.apply(session, topic, action, actor, **FIELDS[action])


async def test_the_secretary_sees_the_category_and_reason_and_then_the_consensus(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    people = await tg.reviewers(services, client, fake)
    await tg.submit(Resident(client, fake))
    await tg.deliver(services)
    convener, party = people["convener"], people["party"]
    await accept(convener)
    await tg.deliver(services)
    card = party.card()
    assert "审定通过" in tg.buttons(card)
    assert "召集人初审归类：协商议事\n召集人受理理由：涉及小区居民共同利益\n" in card["text"]

    await take(services, str(tg.USERS["party"]), ["approve"])
    await take(
        services,
        str(tg.USERS["convener"]),
        ["publish", "plan_research", "record_findings", "schedule_meeting"],
    )
    consensus = "由物业每月疏通一次主管道，社区负责监督。\n" + "沿线住户同意分摊费用。" * 300
    # The minutes and the photos are optional: skipped here.
    for step in ("待办", "下水道", "上传协商成果", consensus, "跳过", "跳过"):
        await act(convener, step)
        await tg.deliver(services)
    assert convener.last().startswith("已办理「上传协商成果」")

    card = party.card()
    assert "审定协商成果" in tg.buttons(card)
    shown = "待审核的协商共识：" + consensus[:999] + "…\n"
    assert shown in card["text"] and consensus not in card["text"]
    assert "召集人受理理由" not in card["text"]  # decided already: not this step's matter
    assert utf16_units(card["text"]) <= TEXT_LIMIT  # one message, the buttons under it
    # The same card from the to-do list.
    for step in ("待办", "下水道"):
        await act(party, step)
        await tg.deliver(services)
    assert shown in party.last() and "审定协商成果" in tg.buttons(party.card())


async def act(who: tg.Reviewer, step: str) -> None:
    """Press the newest button whose label contains ``step``, or else type it."""
    for sent in reversed(who.fake.results("sendMessage")):
        if sent["chat"]["id"] == who.user and sent.get("reply_markup"):
            found = [label for label in tg.buttons(sent) if step in label]
            if found:
                await who.press(found[0])
                return
            break
    await who.say(step)
