"""The public's journey on Telegram, through the real app and the fake Bot API: scan a
room's code → browse its publicized topics → like (twice: one like) → follow → suggest →
unfollow with the button a push carries. And a topic's own deep link."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlmodel import select

from bot.services import Services
from storage.participation import Follow, Like, Suggestion
from tests.fakes.telegram_api import FakeBotAPI
from tests.test_telegram import (  # noqa: F401  (fixtures, by name)
    USER,
    Resident,
    client,
    config_path,
    fake,
    payload,
    post,
    services,
)
from tests.world import build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State


class Public(Resident):
    """A resident who also presses buttons on older messages, or a push's button."""

    def _mine(self) -> list[dict[str, Any]]:
        return [m for m in self.fake.results("sendMessage") if m["chat"]["id"] == self.user]

    async def _tap(self, sent: dict[str, Any], data: str) -> None:
        update_id, _ = self._next()
        query = payload("callback_query")["callback_query"] | {
            "id": f"q{update_id}",
            "message": sent,
            "data": data,
        }
        query["from"] = query["from"] | self.profile
        assert await post(self.client, {"update_id": update_id, "callback_query": query}) == 200

    async def press_on(self, index: int, label: str) -> None:
        """Press ``label`` on the message ``index`` (-2: the one before the newest)."""
        sent = self._mine()[index]
        rows = sent["reply_markup"]["inline_keyboard"]
        (data,) = [b["callback_data"] for row in rows for b in row if b["text"] == label]
        await self._tap(sent, data)

    async def press_payload(self, data: str) -> None:
        """A button carrying ``data`` on the newest message (as on a push)."""
        await self._tap(self._mine()[-1], data)


def keyboard(api: FakeBotAPI) -> list[tuple[str, str]]:
    last = api.keyboards()[-1] or []
    return [button for row in last for button in row]


async def test_scan_browse_like_follow_suggest_unfollow(
    client: TestClient,  # noqa: F811
    services: Services,  # noqa: F811
    fake: FakeBotAPI,  # noqa: F811
    clock: FixedClock,
) -> None:
    world = await build_world(services.sessions, clock)
    topic = await world.at(State.PUBLICIZED)
    li = Public(client, fake)
    await li.say("/start r_V1")
    assert ("公示议题", f"pl:{world.rooms['V1']}:1") in keyboard(fake)
    await li.press("公示议题")
    assert li.last().startswith("一村议事室的公示议题共 1 个")
    await li.press("运河步道增设公厕（公示征求建议中）")
    assert "【公示征求建议中】" in li.last() and "点赞 0 · 关注 0 · 建议 0" in li.last()

    await li.press("点赞")
    assert li.last().startswith("已点赞") and "点赞 1 ·" in li.last()
    # The same 点赞 button pressed again (the older message still shows it): one like.
    await li.press_on(-2, "点赞")
    assert li.last().startswith("您已经点过赞了") and "点赞 1 ·" in li.last()

    await li.press("关注")
    assert "已关注“运河步道增设公厕”" in li.last()
    await li.press("提建议")
    assert "不超过 500 个字" in li.last()
    await li.say("建" * 501)
    assert "最多 500 个字，您输入了 501 个字" in li.last()
    await li.say("建议在步道两端各建一座公厕")
    assert li.last().startswith("您的建议已发布") and "建议 1" in li.last()

    # The off-button every push carries, pressed while in another dialog.
    await li.say("/start r_V1")
    await li.press("提议题")
    await li.press_payload(f"ft:{topic.id}:0")
    assert li.last().startswith("已取消关注“运河步道增设公厕”")

    async with services.sessions() as session:
        likes = (await session.exec(select(Like))).all()
        follows = (await session.exec(select(Follow))).all()
        suggestions = (await session.exec(select(Suggestion))).all()
    assert [(like.active, like.topic_id) for like in likes] == [(True, topic.id)]
    assert [f.ended_at is not None for f in follows] == [True]
    assert [s.body for s in suggestions] == ["建议在步道两端各建一座公厕"]


async def test_a_topics_deep_link_opens_it(
    client: TestClient,  # noqa: F811
    services: Services,  # noqa: F811
    fake: FakeBotAPI,  # noqa: F811
    clock: FixedClock,
) -> None:
    world = await build_world(services.sessions, clock)
    topic = await world.at(State.PUBLICIZED)
    li = Public(client, fake)
    await li.say(f"/start p_{topic.number}")
    assert "运河步道增设公厕" in li.last()
    assert [label for label, _ in keyboard(fake)] == ["提建议", "点赞", "关注", "公示议题列表"]
    assert fake.sent_texts(USER)[-1] == li.last()
