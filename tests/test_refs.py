"""Using a button reference (workflow/refs.py): checked, marked used once, by both the chat
and the review page."""

from __future__ import annotations

import asyncio

from sqlalchemy import update
from sqlmodel import col, select

from bot.services import Services
from storage.db import transaction
from storage.models import ButtonRef, Topic
from tests import test_review
from tests.test_review import Reviewer, button, cards, texts
from tests.world import FIELDS, World
from workflow.errors import InvalidField
from workflow.lifecycle import Role, State
from workflow.refs import RefRefusal, find_ref, use_ref

world, services = test_review.world, test_review.services


async def new_ref(world: World, topic: Topic, action: str = "decline") -> str:
    assert topic.id is not None
    async with transaction(world.sessions) as session:
        session.add(
            ButtonRef(
                token=f"t-{action}",
                person_id=world.person("V1", Role.CONVENER),
                topic_id=topic.id,
                action=action,
                topic_version=topic.version,
                created_at=world.clock.now(),
            )
        )
    return f"t-{action}"


async def used_at(world: World, token: str) -> object:
    async with world.sessions() as session:
        ref = await find_ref(session, token)
    assert ref is not None
    return ref.used_at


async def test_two_uses_of_one_ref_at_once_exactly_one_succeeds(world: World) -> None:
    """The step here changes nothing (no version to race on): the conditional update alone
    decides. On PostgreSQL the second waits for the first's row lock."""
    topic = await world.open("V1")
    token = await new_ref(world, topic)
    steps: list[int] = []

    async def use(n: int) -> RefRefusal | None:
        async with transaction(world.sessions) as session:
            ref = await find_ref(session, token)

            async def step() -> None:
                steps.append(n)
                await asyncio.sleep(0.05)  # hold the mark while the other tries

            return await use_ref(
                session, ref, world.person("V1", Role.CONVENER), world.clock.now(), step
            )

    results = await asyncio.gather(use(1), use(2))
    assert sorted(results, key=lambda r: r is not None) == [None, RefRefusal("used")]
    assert len(steps) == 1
    assert await used_at(world, token) is not None


async def test_a_ref_read_before_another_use_is_refused_by_the_update(world: World) -> None:
    """A copy read while unused passes the checks; the update finds it used meanwhile."""
    topic = await world.open("V1")
    token = await new_ref(world, topic)
    convener = world.person("V1", Role.CONVENER)
    async with world.sessions() as session:
        early = await find_ref(session, token)
    async with transaction(world.sessions) as session:
        await session.exec(
            update(ButtonRef)
            .where(col(ButtonRef.token) == token)
            .values(used_at=world.clock.now())
            .execution_options(synchronize_session=False)
        )
    ran = []

    async def step() -> None:
        ran.append(True)

    async with transaction(world.sessions) as session:
        assert early is not None and early.used_at is None
        session.add(early)
        refusal = await use_ref(session, early, convener, world.clock.now(), step)
    assert refusal == RefRefusal("used") and ran == []


async def test_a_refusing_step_leaves_the_ref_unused(world: World) -> None:
    topic = await world.open("V1")
    token = await new_ref(world, topic)

    async def step() -> None:
        raise InvalidField("empty", field="理由")

    async with transaction(world.sessions) as session:
        ref = await find_ref(session, token)
        try:
            await use_ref(session, ref, world.person("V1", Role.CONVENER), world.clock.now(), step)
        except InvalidField:
            pass
        else:  # pragma: no cover
            raise AssertionError("the step's refusal is re-raised")
        assert ref is not None and ref.used_at is None
    assert await used_at(world, token) is None


async def test_the_chat_marks_its_button_used_through_the_update(
    world: World, services: Services
) -> None:
    """A button used elsewhere while its fields were being asked is refused at the end,
    and the topic is left as it was (the chat used to assign ``used_at`` unchecked)."""
    topic = await world.open("V1")
    convener = Reviewer(services.dialogs, "V1:convener")
    payload = button((await cards(world, "V1:convener"))[-1], "不予受理")
    await convener.press(payload)
    await convener.type("属个人纠纷")
    async with transaction(world.sessions) as session:
        await session.exec(
            update(ButtonRef)
            .where(col(ButtonRef.token) == payload.split(":", 1)[1])
            .values(used_at=world.clock.now())
            .execution_options(synchronize_session=False)
        )
    assert texts(await convener.type("电话")) == "这个按钮已经用过了，议题已处理。"
    assert (await world.reload(topic)).state == State.SUBMITTED


async def test_a_wrong_answer_in_the_chat_keeps_the_button_usable(
    world: World, services: Services
) -> None:
    topic = await world.at(State.OUTCOME_REVIEW)
    party = Reviewer(services.dialogs, "V1:party")
    await party.press(button((await cards(world, "V1:party"))[-1], "审定协商成果"))
    fields = FIELDS["approve_outcome"]
    await party.type(fields["implementer"])
    await party.type(fields["measures"])
    assert "不是有效的日期" in texts(await party.type("明年"))
    assert texts(await party.type(fields["due"])).startswith("已办理「审定协商成果」")
    assert (await world.reload(topic)).state == State.OUTCOME_APPROVED
    async with world.sessions() as session:
        refs = list(await session.exec(select(ButtonRef).where(ButtonRef.topic_id == topic.id)))
    assert sum(r.used_at is not None for r in refs) == 1
