"""提议题's "是不是这件事？" (issue 12, item 8): a resident who types a new topic's title is
shown the open or publicized topics of their room and the rooms nearby that read like it,
with 关注 for each and 点赞 for the publicized ones, and goes on with their own topic when
none is theirs. Through the dialogs (``Dialogs.handle``), as in tests/test_dialogs.py."""

from __future__ import annotations

from sqlmodel import col, select

from bot.services import Services
from dialogs.types import Reply
from storage.models import OutboxMessage
from storage.participation import Follow, Like
from tests.test_dialogs import Person, services, topics
from tests.world import ROUTES, World, build_world
from workflow.clock import FixedClock
from workflow.lifecycle import State

__all__ = ["services"]  # the fixture, used by name

FLOODED = "下雨后小区里到处是水"


async def world_of(services: Services, clock: FixedClock) -> World:
    return await build_world(services.sessions, clock)


async def topic_at(world: World, state: State, room: str, title: str) -> int:
    topic = await world.walk(await world.open(room, title=title), ROUTES[state])
    assert topic.state == state and topic.id is not None
    return topic.id


async def type_title(person: Person, title: str) -> list[Reply]:
    await person.scan("V1")
    await person.say("提议题")
    return await person.send("text", title)


def offered(replies: list[Reply]) -> list[tuple[str, str]]:
    return [(b.label, b.payload) for r in replies for b in r.buttons]


async def test_a_publicized_topic_nearby_is_offered_to_follow_and_like(
    services: Services, clock: FixedClock
) -> None:
    world = await world_of(services, clock)
    nearby = await topic_at(world, State.PUBLICIZED, "V2", "幸福小区雨天积水严重")
    # The same matter, but ended, or in another district: not offered.
    await topic_at(world, State.WITHDRAWN, "V1", "小区雨天积水")
    await topic_at(world, State.PUBLICIZED, "V4", "小区下雨积水严重")
    await topic_at(world, State.SUBMITTED, "V1", "暑期留守儿童托管班")

    replies = await type_title(Person(services), FLOODED)
    offer, ask = replies[-2:]
    assert offer.text.startswith("是不是这件事？附近已有相似的议题：\n")
    assert "1. 幸福小区雨天积水严重（二村议事室，公示征求建议中）\n" in offer.text
    assert "小区雨天积水（" not in offer.text and "小区下雨积水严重" not in offer.text
    assert "沿线3公里没有公厕" not in offer.text  # a title and its state, nothing more
    assert offered([offer]) == [
        ("关注第1件", f"ft:{nearby}:1"),
        ("点赞第1件", f"lk:{nearby}:1"),
    ]
    assert ask.text.startswith("请详细描述情况")


async def test_an_open_unpublished_topic_gets_follow_only_and_keeps_its_title(
    services: Services, clock: FixedClock
) -> None:
    world = await world_of(services, clock)
    lamp = await topic_at(world, State.SUBMITTED, "V1", "3号楼前路灯不亮")
    await topic_at(world, State.PUBLICIZED, "V1", "3号楼前路面坑洼不平")  # same place, other matter

    replies = await type_title(Person(services), "3号楼那边晚上没有灯")
    offer = replies[-2].text
    assert "1. 一村议事室一件相似的议题（待初审，尚未公示，内容暂不公开）\n" in offer
    assert "路灯" not in offer  # not public yet: typing words must not read others' topics
    assert "点赞" not in replies[-2].text  # nothing to like before publication
    assert offered(replies) == [("关注第1件", f"ft:{lamp}:1")]
    assert "路面坑洼" not in replies[-2].text


async def test_at_most_three_are_offered(services: Services, clock: FixedClock) -> None:
    world = await world_of(services, clock)
    for room in ("V1", "V2", "T1", "V1"):
        await topic_at(world, State.SUBMITTED, room, "小区雨天积水严重")
    replies = await type_title(Person(services), FLOODED)
    assert [label for label, _ in offered(replies)] == ["关注第1件", "关注第2件", "关注第3件"]
    assert "一镇议事室一件相似的议题（待初审" in replies[-2].text  # the parent is nearby too


async def test_a_new_matter_is_asked_for_its_description_straight_away(
    services: Services, clock: FixedClock
) -> None:
    world = await world_of(services, clock)
    await topic_at(world, State.PUBLICIZED, "V1", "幸福小区雨天积水严重")
    replies = await type_title(Person(services), "村里想建一个图书室")
    assert replies[-1].text.startswith("请详细描述情况")
    assert "是不是这件事" not in "\n".join(r.text for r in replies)


async def test_the_resident_goes_on_with_their_own_topic(
    services: Services, clock: FixedClock
) -> None:
    world = await world_of(services, clock)
    await topic_at(world, State.PUBLICIZED, "V2", "幸福小区雨天积水严重")
    person = Person(services)
    assert "是不是这件事" in "\n".join(r.text for r in await type_title(person, FLOODED))
    assert (await person.say("5号楼后面一下雨就淹，和那件不是一处")).startswith("可以补充照片")
    await person.say("下一步")
    await person.say("跳过")
    assert "编号：" in await person.say("1")
    mine = [t for t in await topics(services) if t.title == FLOODED]
    assert len(mine) == 1 and mine[0].background.startswith("5号楼后面")


async def test_the_first_review_card_lists_a_paraphrase_as_a_possible_duplicate(
    services: Services, clock: FixedClock
) -> None:
    world = await world_of(services, clock)
    await world.open("V1", title="幸福小区雨天积水严重")
    withdrawn = await world.open("V1", title="小区下雨积水")
    await world.walk(withdrawn, ["withdraw"])
    await world.open("V1", title="暑期留守儿童托管班")
    new = await world.open("V1", title=FLOODED)
    async with services.sessions() as session:
        cards = list(
            await session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.address == "V1:convener")
                .order_by(col(OutboxMessage.id))
            )
        )
    card = cards[-1].body["text"]
    assert new.number in card
    assert "可能重复的议题：\n· D1-2026-000001「幸福小区雨天积水严重」（待初审）" in card
    assert "小区下雨积水" not in card and "托管班" not in card


async def test_follow_and_like_from_the_offer_then_go_on_with_ones_own_topic(
    services: Services, clock: FixedClock
) -> None:
    world = await world_of(services, clock)
    public = await topic_at(world, State.PUBLICIZED, "V2", "幸福小区雨天积水严重")
    private = await topic_at(world, State.SUBMITTED, "V1", "小区下雨积水")
    person = Person(services)
    replies = await type_title(person, FLOODED)
    buttons = dict(offered(replies))
    assert set(buttons.values()) == {f"ft:{public}:1", f"lk:{public}:1", f"ft:{private}:1"}
    follow_public = next(k for k, v in buttons.items() if v == f"ft:{public}:1")
    like_public = next(k for k, v in buttons.items() if v == f"lk:{public}:1")
    follow_private = next(k for k, v in buttons.items() if v == f"ft:{private}:1")

    said = "\n".join(r.text for r in await person.send("button", payload=buttons[like_public]))
    assert "已点赞" in said
    await person.send("button", payload=buttons[like_public])  # a double tap: still one like
    said = "\n".join(r.text for r in await person.send("button", payload=buttons[follow_private]))
    assert "已关注这个议题" in said and "小区下雨积水" not in said
    await person.send("button", payload=buttons[follow_public])
    async with services.sessions() as session:
        likes = (await session.exec(select(Like.topic_id).where(col(Like.active)))).all()
        follows = (
            await session.exec(select(Follow.topic_id).where(col(Follow.ended_at).is_(None)))
        ).all()
    assert likes == [public] and sorted(follows) == sorted([public, private])

    # Still in 提议题: the description comes next, and the topic is the resident's own.
    assert (await person.say("5号楼后面一下雨就淹")).startswith("可以补充照片")
    await person.say("下一步")
    await person.say("跳过")
    assert "编号：" in await person.say("1")
    assert [t.title for t in await topics(services)].count(FLOODED) == 1
