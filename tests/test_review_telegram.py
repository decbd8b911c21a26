"""The review matrix in Telegram: cards pushed through the outbox to the fake Bot API, every
step taken by pressing inline buttons (callback_query updates) and typing (message updates)
on the real webhook, the outcome read from the database and from what the resident is sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.services import Services
from bot.telegram import CHAT_INTERVAL
from tests import review_matrix as matrix
from tests import test_telegram
from tests.fakes.telegram_api import FakeBotAPI
from tests.review_matrix import MATRIX, Case
from tests.test_telegram import Resident, payload, post
from workflow.clock import FixedClock
from workflow.lifecycle import Role, State

# The Telegram tests' fixtures, used here by name (pytest finds them as module attributes).
client, config_path, fake, services = (
    test_telegram.client,
    test_telegram.config_path,
    test_telegram.fake,
    test_telegram.services,
)

#: Telegram user ids of the reviewers (a private chat's id is its user's id).
USERS = {key: 5001 + n for n, key in enumerate(matrix.REVIEWERS)}


class Reviewer(Resident):
    def sent_cards(self) -> list[dict[str, Any]]:
        """The cards (Messages with an inline keyboard) this reviewer was sent, oldest first."""
        return [
            m
            for m in self.fake.results("sendMessage")
            if m["chat"]["id"] == self.user and "【" in m["text"] and m.get("reply_markup")
        ]

    def cards(self) -> list[list[str]]:
        return [list(buttons(m)) for m in self.sent_cards()]

    def card(self) -> dict[str, Any]:
        return self.sent_cards()[-1]

    async def press_data(self, data: str) -> None:
        """A press on this reviewer's newest card whose callback_query carries ``data``."""
        update_id, _ = self._next()
        query: dict[str, Any] = payload("callback_query")["callback_query"] | {
            "id": f"q{update_id}",
            "message": self.card(),
            "data": data,
        }
        query["from"] = query["from"] | {"id": self.user}
        assert await post(self.client, {"update_id": update_id, "callback_query": query}) == 200


def buttons(card: dict[str, Any]) -> dict[str, str]:
    return {
        b["text"]: b["callback_data"]
        for row in card["reply_markup"]["inline_keyboard"]
        for b in row
    }


async def reviewers(services: Services, client: TestClient, fake: FakeBotAPI) -> dict[str, Any]:
    for key, (room, role) in matrix.REVIEWERS.items():
        await matrix.enrol(services.sessions, "telegram", str(USERS[key]), room, role)
    return {key: Reviewer(client, fake, user=user) for key, user in USERS.items()}


async def submit(resident: Resident) -> None:
    await resident.say("/start r_V1")
    await resident.press("提议题")
    await resident.say(matrix.TITLE)
    await resident.say(matrix.BACKGROUND)
    await resident.press("下一步")
    await resident.press("跳过")
    await resident.press("确认提交")
    assert resident.last().startswith("议题已提交！")


async def deliver(services: Services) -> None:
    """Everything due, letting time pass for the outbox's one message per second per chat."""
    clock = services.clock
    assert isinstance(clock, FixedClock)
    dispatcher = services.dispatcher()
    while True:
        if await dispatcher.drain():
            continue
        clock.advance(CHAT_INTERVAL)
        if not await dispatcher.drain():
            return


@pytest.mark.parametrize("case", MATRIX)
async def test_each_review_action_through_inline_buttons(
    client: TestClient, services: Services, fake: FakeBotAPI, case: Case
) -> None:
    people = await reviewers(services, client, fake)
    resident = Resident(client, fake)
    await submit(resident)
    before = await matrix.play(case, people, lambda: deliver(services))
    await matrix.check(case, services.sessions, people, before, resident.last())
    assert await matrix.refusals(services.sessions) == []


async def test_a_press_on_another_reviewers_button_is_refused_and_changes_nothing(
    client: TestClient, services: Services, fake: FakeBotAPI
) -> None:
    people = await reviewers(services, client, fake)
    second = Reviewer(client, fake, user=5999)  # a second convener of the same room
    await matrix.enrol(services.sessions, "telegram", "5999", "V1", Role.CONVENER)
    await submit(Resident(client, fake))
    await deliver(services)
    first = people["convener"]
    theirs, mine = buttons(first.card()), buttons(second.card())
    assert set(theirs) == set(mine) and theirs["不予受理"] != mine["不予受理"]

    await second.press_data(theirs["不予受理"])
    assert second.last() == matrix.REFUSED
    topic = await matrix.the_topic(services.sessions)
    assert (topic.state, topic.version, topic.facts) == (State.SUBMITTED, 0, {})
    assert await matrix.refusals(services.sessions) == ["forged"]
    # The button is still good for the one it was made for.
    await first.press("不予受理")
    assert first.last() == "请输入「理由」："
