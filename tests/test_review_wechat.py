"""The review matrix in WeChat: cards pushed through the outbox to the fake WeChat API as
customer-service menus (``msgmenu``, the reviewers being inside their window), every step
taken by tapping a menu option (a text message carrying ``bizmsgmenuid``), typing a number
for an option listed in a passive reply, or typing text, all signed webhook posts to the
real app; the outcome read from the database and from what the resident is sent.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import xmltodict

from bot.pieces import utf8_bytes
from bot.wechat.client import TEXT_BYTES
from tests import review_matrix as matrix
from tests import test_wechat
from tests.fakes.wechat_api import CUSTOM_SEND
from tests.review_matrix import MATRIX, Case
from tests.test_wechat import OPENID, Harness, Start, payload
from workflow.lifecycle import Role, State

# The WeChat tests' fixtures, used here by name (pytest finds them as module attributes).
fake, start = test_wechat.fake, test_wechat.start

#: The reviewers' openids.
OPENIDS = {key: f"oReviewer{key:0>19}" for key in matrix.REVIEWERS}


class Reviewer:
    """Someone in WeChat who taps menu options and types; ``shown`` is the bot's last
    passive reply to them."""

    def __init__(self, h: Harness, openid: str) -> None:
        self.h, self.openid, self.shown = h, openid, ""

    async def send(self, content: str, menu_id: str | None = None) -> None:
        self.h.msg_ids[0] += 1
        fields = {"FromUserName": self.openid, "Content": content, "MsgId": str(self.h.msg_ids[0])}
        xml = (
            payload("text_menu_tap", bizmsgmenuid=menu_id, **fields)
            if menu_id
            else payload("text", **fields)
        )
        response = await self.h.post(xml)
        assert response.status == 200
        body = await response.text()
        self.shown = "" if body == "success" else xmltodict.parse(body)["xml"]["Content"]

    async def say(self, text: str) -> None:
        await self.send(text)

    async def press(self, label: str) -> None:
        """An option of the last passive reply is picked by its number; otherwise ``label``
        is tapped on the newest menu that offers it."""
        listed = re.search(rf"^(\d+)\. {re.escape(label)}$", self.shown, re.M)
        if listed:
            await self.send(listed[1])
            return
        for menu in reversed(self.menus()):
            if label in menu:
                await self.send(label, menu[label])
                return
        raise AssertionError(f"no option {label!r} for {self.openid}")

    def menus(self) -> list[dict[str, str]]:
        """label → bizmsgmenuid of every msgmenu sent to this reviewer, oldest first."""
        return [
            {item["content"]: item["id"] for item in call.json["msgmenu"]["list"]}
            for call in self.h.fake.calls(CUSTOM_SEND)
            if call.json["touser"] == self.openid and call.json["msgtype"] == "msgmenu"
        ]

    def cards(self) -> list[list[str]]:
        return [list(menu) for menu in self.menus()]


async def reviewer(h: Harness, openid: str, room: str, role: str) -> Reviewer:
    """Someone holding ``role`` in ``room``, inside their customer-service window."""
    now = h.clock.now()
    await matrix.enrol(h.services.sessions, "wechat", openid, room, role, last_inbound_at=now)
    return Reviewer(h, openid)


async def reviewers(h: Harness) -> dict[str, Any]:
    return {key: await reviewer(h, OPENIDS[key], *where) for key, where in matrix.REVIEWERS.items()}


async def submit(h: Harness) -> None:
    assert (await h.post(payload("subscribe_scene"))).status == 200
    for answer in ("1", matrix.TITLE, matrix.BACKGROUND, "1", "1"):  # 提议题 … 下一步, 跳过
        await h.text(answer)
    assert (await h.text("1")).startswith("议题已提交！")  # 确认提交


def told(h: Harness) -> str:
    """The newest customer-service text the resident was sent."""
    return [
        call.json["text"]["content"]
        for call in h.fake.calls(CUSTOM_SEND)
        if call.json["touser"] == OPENID and call.json["msgtype"] == "text"
    ][-1]


async def deliver(h: Harness) -> None:
    while await h.services.dispatcher().run_once():
        pass


@pytest.mark.parametrize("case", MATRIX)
async def test_each_review_action_through_msgmenu_taps(start: Start, case: Case) -> None:
    h = await start()
    people = await reviewers(h)
    await submit(h)
    before = await matrix.play(case, people, lambda: deliver(h))
    await matrix.check(case, h.services.sessions, people, before, told(h))
    assert await matrix.refusals(h.services.sessions) == []


async def test_a_tap_on_another_reviewers_menu_is_refused_and_changes_nothing(
    start: Start,
) -> None:
    h = await start()
    people = await reviewers(h)
    second = await reviewer(h, "oReviewersecondconvener0000", "V1", Role.CONVENER)
    await submit(h)
    await deliver(h)
    first = people["convener"]
    theirs, mine = first.menus()[-1], second.menus()[-1]
    assert set(theirs) == set(mine) and theirs["不予受理"] != mine["不予受理"]

    await second.send("不予受理", theirs["不予受理"])
    assert second.shown == matrix.REFUSED
    topic = await matrix.the_topic(h.services.sessions)
    assert (topic.state, topic.version, topic.facts) == (State.SUBMITTED, 0, {})
    assert await matrix.refusals(h.services.sessions) == ["forged"]
    # The option is still good for the one it was made for.
    await first.press("不予受理")
    assert first.shown == "请输入「理由」："


async def test_the_secretary_sees_the_category_and_a_long_reason_shortened(start: Start) -> None:
    """Issue 11: the approval card shows what the convener decided, and why."""
    h = await start()
    people = await reviewers(h)
    await submit(h)
    convener = people["convener"]
    reason = ("该小区下水道问题涉及三百余户居民，" + "多次反映未能解决，" * 60)[:500]
    for step in (convener.press("受理"), convener.press("协商议事"), convener.say(reason)):
        await deliver(h)
        await step
    await deliver(h)
    [card] = [
        call.json["msgmenu"]
        for call in h.fake.calls(CUSTOM_SEND)
        if call.json["touser"] == OPENIDS["party"]
    ]
    assert [option["content"] for option in card["list"]] == ["审定通过", "退回"]
    text = card["head_content"]
    assert matrix.TITLE in text and "召集人初审归类：协商议事\n" in text
    assert "召集人受理理由：" + reason[:299] + "…\n" in text
    assert utf8_bytes(text) <= TEXT_BYTES
