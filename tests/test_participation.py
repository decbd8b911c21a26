"""workflow/participation.py: likes, follows, suggestions, reports and moderation, on the
database (SQLite, and PostgreSQL with MASHANGYI_TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.config import ConfigError, load_config
from storage.db import SessionFactory, transaction
from storage.models import AuditEntry, Room, Topic
from storage.participation import Follow, Like, Suggestion, SuggestionReport
from tests.world import World, build_world
from workflow import participation as p
from workflow.clock import FixedClock
from workflow.errors import InvalidField, MissingField, NotPermitted, WrongState
from workflow.lifecycle import Role, State
from workflow.permissions import load_actor

WORDS = ["违禁词", "Spam"]


@pytest.fixture
async def world(sessions: SessionFactory, clock: FixedClock) -> World:
    return await build_world(sessions, clock)


async def _rows(world: World, table: type, **where: object) -> list:
    async with world.sessions() as session:
        query = select(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return list((await session.exec(query.order_by(col(table.id)))).all())


async def _like(world: World, person: int, topic: Topic, liked: bool) -> bool:
    async with transaction(world.sessions) as session:
        return await p.set_like(session, person, topic, liked, world.clock.now())


async def _suggest(world: World, person: int, topic: Topic, body: str, key: str) -> Suggestion:
    async with transaction(world.sessions) as session:
        fresh = await session.get(Topic, topic.id)
        assert fresh is not None
        return await p.suggest(session, person, fresh, body, key, WORDS, world.clock.now())


async def _counts(world: World, topic: Topic) -> p.Counts:
    async with world.sessions() as session:
        assert topic.id is not None
        return await p.counts(session, topic.id)


async def test_a_like_is_a_set_not_a_flip(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    resident = world.person("-", "resident")
    assert await _like(world, resident, topic, True) is True
    assert await _like(world, resident, topic, True) is False  # the double tap
    assert (await _counts(world, topic)).likes == 1
    assert await _like(world, resident, topic, False) is True
    assert await _like(world, resident, topic, False) is False
    assert (await _counts(world, topic)).likes == 0
    await _like(world, resident, topic, True)
    rows = await _rows(world, Like)
    assert [(r.person_id, r.active) for r in rows] == [(resident, True)]  # still one row


async def test_two_sessions_liking_at_once_make_one_row(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    resident = world.person("-", "resident")
    changed = await asyncio.gather(*(_like(world, resident, topic, True) for _ in range(4)))
    assert sorted(changed) == [False, False, False, True]
    assert len(await _rows(world, Like)) == 1
    assert (await _counts(world, topic)).likes == 1


@pytest.mark.parametrize("state", [State.WITHDRAWN, State.DECLINED, State.APPROVED])
async def test_likes_on_topics_not_public_are_refused(world: World, state: State) -> None:
    topic = await world.at(state)
    with pytest.raises(WrongState, match="不能进行「点赞」"):
        await _like(world, world.person("-", "resident"), topic, True)
    assert await _rows(world, Like) == []


async def test_follow_unfollow_and_follow_again_is_one_row(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    resident = world.person("-", "resident")
    now = world.clock.now()

    async def follow(on: bool) -> bool:
        async with transaction(world.sessions) as session:
            return await p.set_follow_topic(session, resident, topic, on, world.clock.now())

    assert await follow(True) and not await follow(True)
    world.clock.advance(timedelta(hours=1))
    assert await follow(False) and not await follow(False)
    (row,) = await _rows(world, Follow)
    assert row.ended_at == now + timedelta(hours=1)
    assert (await _counts(world, topic)).follows == 0
    assert await follow(True)
    (row,) = await _rows(world, Follow)
    assert row.ended_at is None and row.created_at == now
    async with world.sessions() as session:
        assert topic.id is not None
        assert await p.stance(session, resident, topic.id) == p.Stance(False, True)


async def test_following_a_withdrawn_topic_is_refused_unfollowing_is_not(world: World) -> None:
    topic = await world.at(State.WITHDRAWN)
    resident = world.person("-", "resident")
    async with transaction(world.sessions) as session:
        with pytest.raises(WrongState):
            await p.set_follow_topic(session, resident, topic, True, world.clock.now())
        assert await p.set_follow_topic(session, resident, topic, False, world.clock.now()) is False


async def test_room_follows(world: World) -> None:
    resident = world.person("-", "resident")
    async with transaction(world.sessions) as session:
        room = await session.get(Room, world.rooms["V1"])
        assert room is not None
        assert await p.set_follow_room(session, resident, room, True, world.clock.now())
        assert not await p.set_follow_room(session, resident, room, True, world.clock.now())
        assert await p.follows_room(session, resident, world.rooms["V1"])
        assert await p.set_follow_room(session, resident, room, False, world.clock.now())
        assert not await p.follows_room(session, resident, world.rooms["V1"])
    (row,) = await _rows(world, Follow)
    assert row.room_id == world.rooms["V1"] and row.topic_id is None


async def test_a_suggestion_is_one_row_per_message(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    resident = world.person("-", "resident")
    first = await _suggest(world, resident, topic, "  建议在步道两端各建一座\x00  ", "console:1")
    again = await _suggest(world, resident, topic, "建议在步道两端各建一座", "console:1")
    assert first.id == again.id
    assert first.body == "建议在步道两端各建一座" and first.status == p.Status.VISIBLE
    assert (await _counts(world, topic)).suggestions == 1


async def test_a_suggestion_over_the_limit_is_refused_with_the_limit(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    with pytest.raises(InvalidField, match="最多 500 个字，您输入了 501 个字"):
        await _suggest(world, world.person("-", "resident"), topic, "字" * 501, "k")
    with pytest.raises(MissingField):
        await _suggest(world, world.person("-", "resident"), topic, " \ud800 ", "k")
    ok = await _suggest(world, world.person("-", "resident"), topic, "字" * 500, "k")
    assert len(ok.body) == 500


async def test_a_sensitive_word_holds_the_suggestion_for_the_convener(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    held = await _suggest(world, world.person("-", "resident"), topic, "这是ＳＰＡＭ广告", "k1")
    assert held.status == p.Status.HELD and held.matched == "Spam"
    await _suggest(world, world.person("-", "resident"), topic, "这是ＳＰＡＭ广告", "k1")  # retried
    assert (await _counts(world, topic)).suggestions == 0
    audits = await _rows(world, AuditEntry, action="suggestion.hold")
    assert [a.subject["suggestion_id"] for a in audits] == [held.id]  # once, not per retry
    async with world.sessions() as session:
        pending = await p.awaiting_moderation(session, [world.rooms["V1"]])
        assert [s.id for s in pending] == [held.id]
        assert await p.awaiting_moderation(session, [world.rooms["V2"]]) == []


async def test_suggestions_close_at_the_published_time(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    async with transaction(world.sessions) as session:
        row = await session.get(Topic, topic.id)
        assert row is not None
        closes = world.clock.now() + timedelta(days=7)
        row.facts = {**row.facts, "publish": {"suggestions_close": closes.isoformat()}}
    world.clock.advance(timedelta(days=7) - timedelta(seconds=1))
    await _suggest(world, world.person("-", "resident"), topic, "赶在截止前", "a")
    world.clock.advance(timedelta(seconds=1))
    with pytest.raises(WrongState, match="建议征集已于3月9日 10:00截止"):
        await _suggest(world, world.person("-", "resident"), topic, "晚了", "b")


async def test_a_date_closes_at_the_end_of_that_day_in_china(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    topic.facts = {"publish": {"suggestions_close": "2026-03-09"}}
    assert p.suggestions_open(topic, world.clock.now() + timedelta(days=7, hours=13, minutes=59))
    assert not p.suggestions_open(topic, world.clock.now() + timedelta(days=7, hours=14))


async def test_a_closing_day_is_said_as_that_day_not_as_midnight_of_the_next(
    world: World,
) -> None:
    topic = await world.at(State.PUBLICIZED)
    async with transaction(world.sessions) as session:
        row = await session.get(Topic, topic.id)
        assert row is not None
        row.facts = {**row.facts, "publish": {"suggestions_close": "2026-03-09"}}
    world.clock.advance(timedelta(days=8))
    with pytest.raises(WrongState, match="建议征集已于3月9日24时截止"):
        await _suggest(world, world.person("-", "resident"), topic, "晚了", "c")


@pytest.mark.parametrize("state", [State.RESEARCHING, State.APPROVED, State.WITHDRAWN])
async def test_no_suggestions_outside_publication(world: World, state: State) -> None:
    topic = await world.at(state)
    with pytest.raises(WrongState):
        await _suggest(world, world.person("-", "resident"), topic, "建议", "k")
    assert await _rows(world, Suggestion) == []


async def _report(world: World, person: int, suggestion: Suggestion) -> Suggestion:
    async with transaction(world.sessions) as session:
        assert suggestion.id is not None
        return await p.report(session, person, suggestion.id, world.clock.now())


async def test_three_distinct_reports_hide_a_suggestion(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    author = world.person("-", "resident")
    s = await _suggest(world, author, topic, "一条建议", "k")
    reporters = [
        world.person("-", "neighbour"),
        world.person("V2", "grid"),
        world.person("V3", "grid"),
    ]
    with pytest.raises(NotPermitted, match="不能举报自己"):
        await _report(world, author, s)
    await _report(world, reporters[0], s)
    after = await _report(world, reporters[0], s)  # the same person again: nothing
    assert after.reports == 1 and after.status == p.Status.VISIBLE
    await _report(world, reporters[1], s)
    hidden = await _report(world, reporters[2], s)
    assert hidden.status == p.Status.HIDDEN and hidden.hidden_by_reports
    assert len(await _rows(world, SuggestionReport)) == 3
    assert len(await _rows(world, AuditEntry, action="suggestion.report_hidden")) == 1
    assert (await _counts(world, topic)).suggestions == 0


async def test_reports_at_once_hide_once(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    s = await _suggest(world, world.person("-", "resident"), topic, "一条建议", "k")
    people = [world.person(room, "grid") for room in ("V1", "V2", "V3", "V4", "T1")]
    outcome = await asyncio.gather(
        *(_report(world, person, s) for person in people), return_exceptions=True
    )
    # Reports that come after the third hid it have nothing left to hide: refused.
    refused = [r for r in outcome if isinstance(r, Exception)]
    assert all(isinstance(r, WrongState) for r in refused), refused
    (row,) = await _rows(world, Suggestion)
    assert row.status == p.Status.HIDDEN and row.hidden_by_reports
    assert row.reports == len(people) - len(refused) >= p.REPORTS_TO_HIDE
    assert len(await _rows(world, SuggestionReport)) == row.reports
    assert len(await _rows(world, AuditEntry, action="suggestion.report_hidden")) == 1


async def _moderate(
    world: World, person: int, s: Suggestion, hide: bool, reason: str
) -> Suggestion:
    async with transaction(world.sessions) as session:
        actor = await load_actor(session, person)
        assert s.id is not None
        return await p.moderate(session, actor, s.id, hide, reason, world.clock.now())


async def test_only_the_rooms_convener_moderates_with_a_reason(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    s = await _suggest(world, world.person("-", "resident"), topic, "含违禁词的建议", "k")
    for outsider in (
        world.person("V1", Role.PARTY),
        world.person("V2", Role.CONVENER),
        world.person("CITY", Role.ADMIN),
        world.person("-", "resident"),
    ):
        with pytest.raises(NotPermitted):
            await _moderate(world, outsider, s, False, "没问题")
    convener = world.person("V1", Role.CONVENER)
    with pytest.raises(MissingField, match="理由"):
        await _moderate(world, convener, s, False, "  ")
    restored = await _moderate(world, convener, s, False, "误判")
    assert restored.status == p.Status.VISIBLE and restored.moderation_reason == "误判"
    assert restored.moderated_by_id == convener
    await _moderate(world, convener, s, False, "误判")  # the double tap: nothing more
    hidden = await _moderate(world, convener, s, True, "含人身攻击")
    assert hidden.status == p.Status.HIDDEN and not hidden.hidden_by_reports
    audits = await _rows(world, AuditEntry)
    moderation = [(a.action, a.actor_id, a.subject.get("reason")) for a in audits]
    assert moderation == [
        ("suggestion.hold", None, None),
        ("suggestion.restore", convener, "误判"),
        ("suggestion.hide", convener, "含人身攻击"),
    ]
    assert len(await _rows(world, Suggestion)) == 1  # nothing deleted


async def test_the_convener_decides_on_a_report_hidden_suggestion(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    s = await _suggest(world, world.person("-", "resident"), topic, "一条建议", "k")
    for room in ("V2", "V3", "V4"):
        await _report(world, world.person(room, "grid"), s)
    convener = world.person("V1", Role.CONVENER)
    confirmed = await _moderate(world, convener, s, True, "确有不实内容")
    assert confirmed.status == p.Status.HIDDEN and not confirmed.hidden_by_reports
    async with world.sessions() as session:
        assert await p.awaiting_moderation(session, [world.rooms["V1"]]) == []
    restored = await _moderate(world, convener, s, False, "经核实无误")
    assert restored.status == p.Status.VISIBLE and restored.reports == 0
    # The old reporters cannot report again; it takes three new ones.
    again = await _report(world, world.person("V2", "grid"), s)
    assert again.status == p.Status.VISIBLE and again.reports == 0


async def test_the_visible_list_leaves_out_held_and_hidden(world: World) -> None:
    topic = await world.at(State.PUBLICIZED)
    resident = world.person("-", "resident")
    shown = await _suggest(world, resident, topic, "好建议", "a")
    await _suggest(world, resident, topic, "违禁词", "b")
    async with world.sessions() as session:
        assert topic.id is not None
        assert [s.id for s in await p.visible_suggestions(session, topic.id)] == [shown.id]


def test_the_sensitive_word_list_comes_from_config_and_its_file(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("# 一行一个\n广告\n\n赌博  # 注释\n违禁词\n", "utf-8")
    (tmp_path / "c.toml").write_text(
        '[moderation]\nsensitive_words = ["违禁词", " "]\nsensitive_words_file = "words.txt"\n',
        "utf-8",
    )
    config = load_config(tmp_path / "c.toml", env={})
    assert config.sensitive_words() == ["违禁词", "广告", "赌博"]
    env = {"MASHANGYI_MODERATION_SENSITIVE_WORDS_FILE": "missing.txt"}
    with pytest.raises(ConfigError, match="sensitive_words_file"):
        load_config(tmp_path / "c.toml", env=env).sensitive_words()
