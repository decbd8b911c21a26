"""The public's journey on WeChat, through signed webhook requests to the real app (passive
replies with numbered options, a push's msgmenu button): scan → browse → like (the same
number twice: one like) → follow → suggest → unfollow. And a topic's own code."""

from __future__ import annotations

from sqlmodel import select

from storage.participation import Follow, Like, Suggestion
from tests.test_wechat import (  # noqa: F401  (fixtures, by name)
    Harness,
    Start,
    fake,
    payload,
    reply_content,
    start,
)
from tests.world import build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State


def option(reply: str, label: str) -> str:
    """The number WeChat's text reply gives the option ``label``."""
    for line in reply.splitlines():
        number, _, text = line.partition(". ")
        if number.isdecimal() and text == label:
            return number
    raise AssertionError(f"no option {label!r} in {reply!r}")


async def tap(h: Harness, label: str, menu_id: str) -> str:
    """A msgmenu option tapped: its label as the text, its id as ``bizmsgmenuid``."""
    h.msg_ids[0] += 1
    xml = payload("text_menu_tap", Content=label, MsgId=str(h.msg_ids[0]), bizmsgmenuid=menu_id)
    return reply_content(await (await h.post(xml)).text())


async def test_scan_browse_like_follow_suggest_unfollow(
    start: Start,  # noqa: F811
    clock: FixedClock,
) -> None:
    h = await start()
    world = await build_world(h.services.sessions, clock)
    topic = await world.at(State.PUBLICIZED)
    welcome = reply_content(await (await h.post(payload("subscribe_scene"))).text())
    assert "1. 提议题\n2. 公示议题\n3. 我的议题\n4. 换议事室" in welcome
    listing = await h.text("2")
    assert listing.startswith("一村议事室的公示议题共 1 个")
    view = await h.text(option(listing, "运河步道增设公厕（公示征求建议中）"))
    assert "【公示征求建议中】" in view and "点赞 0 · 关注 0 · 建议 0" in view

    like = option(view, "点赞")
    liked = await h.text(like)
    assert liked.startswith("已点赞") and "点赞 1 ·" in liked
    assert option(liked, "取消点赞") == like
    # The person types the old number again: it now means 取消点赞 (a SET, so it says so).
    again = await h.text(like)
    assert again.startswith("已取消点赞") and "点赞 0 ·" in again
    relike = await h.text(option(again, "点赞"))
    assert "点赞 1 ·" in relike
    # The 点赞 of a msgmenu (a customer-service message's button) tapped twice: one like.
    for _ in range(2):
        tapped = await tap(h, "点赞", f"lk:{topic.id}:1")
        assert tapped.startswith("您已经点过赞了") and "点赞 1 ·" in tapped

    followed = await h.text(option(relike, "关注"))
    assert "已关注“运河步道增设公厕”" in followed
    ask = await h.text(option(followed, "提建议"))
    assert "不超过 500 个字" in ask
    refused = await h.text("议" * 501)
    assert "最多 500 个字，您输入了 501 个字" in refused
    posted = await h.text("建议在步道两端各建一座公厕")
    assert posted.startswith("您的建议已发布") and "建议 1" in posted

    # A push's 取消关注, as a msgmenu tap (bizmsgmenuid), in the middle of 提议题.
    await h.text("菜单")
    assert (await h.text("1")).startswith("请用一句话写下议题标题")
    unfollowed = await tap(h, "取消关注", f"ft:{topic.id}:0")
    assert unfollowed.startswith("已取消关注“运河步道增设公厕”")

    async with h.services.sessions() as session:
        likes = (await session.exec(select(Like))).all()
        follows = (await session.exec(select(Follow))).all()
        suggestions = (await session.exec(select(Suggestion))).all()
    assert [(like.active, like.topic_id) for like in likes] == [(True, topic.id)]
    assert [f.ended_at is not None for f in follows] == [True]
    assert [s.body for s in suggestions] == ["建议在步道两端各建一座公厕"]


async def test_a_topics_code_opens_it(
    start: Start,  # noqa: F811
    clock: FixedClock,
) -> None:
    h = await start()
    world = await build_world(h.services.sessions, clock)
    topic = await world.at(State.PUBLICIZED)
    scanned = reply_content(
        await (await h.post(payload("scan", EventKey=f"p_{topic.number}"))).text()
    )
    assert "运河步道增设公厕" in scanned
    assert "1. 提建议\n2. 点赞\n3. 关注\n4. 公示议题列表" in scanned
