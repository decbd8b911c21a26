"""Other sources through the bot: 委员荐题 (alone and joint), 党政点题, 网格推题."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import col, select

from bot.services import Services
from dialogs.types import Inbound, Reply, room_payload
from storage.db import transaction
from storage.models import (
    AuditEntry,
    ChannelIdentity,
    OutboxMessage,
    Person,
    RoleGrant,
    Topic,
    TopicEvent,
)
from tests import test_review
from tests.world import World
from workflow.lifecycle import Role

#: The reviewers' fixtures (the room tree with people in every role, the bot's services)
#: and their look-up of what was queued for a console address.
world, services, outbox = test_review.world, test_review.services, test_review.cards


class Chat:
    """A person with a console identity ``ROOM:role`` (see tests/world.py)."""

    def __init__(self, services: Services, address: str) -> None:
        self.services, self.address = services, address

    async def send(self, kind: str, text: str = "", payload: str = "") -> list[Reply]:
        return await self.services.dialogs.handle(
            Inbound("console", self.address, kind, text=text, payload=payload)  # type: ignore[arg-type]
        )

    async def press(self, payload: str) -> str:
        return texts(await self.send("button", payload=payload))

    async def type(self, text: str) -> str:
        return texts(await self.send("text", text))

    async def menu(self, room: str = "V1") -> list[str]:
        [welcome] = await self.send("start", payload=room_payload(room))
        return [b.label for b in welcome.buttons]

    async def write(self, title: str = "运河步道增设公厕", description: str = "沿线3公里没有公厕"):
        await self.type(title)
        return await self.type(description)


def texts(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)


async def topics(world: World) -> list[Topic]:
    async with world.sessions() as session:
        return list(await session.exec(select(Topic).order_by(col(Topic.id))))


async def refusals(world: World) -> list[tuple[str, str]]:
    async with world.sessions() as session:
        rows = await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))
        return [(r.action, r.subject.get("reason") or r.subject.get("source", "")) for r in rows]


async def add_member(world: World, room: str, name: str) -> int:
    async with transaction(world.sessions) as session:
        person = Person(display_name=name)
        session.add(person)
        await session.flush()
        assert person.id is not None
        session.add(ChannelIdentity(person_id=person.id, channel="console", external_id=name))
        session.add(RoleGrant(person_id=person.id, room_id=world.rooms[room], role=Role.MEMBER))
        return person.id


BASE = ["提议题", "我的议题"]


async def test_the_menu_offers_each_source_only_to_its_role_in_the_room(
    world: World, services: Services
) -> None:
    assert await Chat(services, "-:resident").menu() == [*BASE, "换议事室"]
    assert await Chat(services, "V1:member").menu() == [
        "提议题",
        "委员荐题",
        "我的议题",
        "待办",
        "换议事室",
    ]
    assert await Chat(services, "V1:party").menu() == [
        "提议题",
        "党政点题",
        "我的议题",
        "待办",
        "换议事室",
    ]
    assert await Chat(services, "V1:grid").menu() == [
        "提议题",
        "网格推题",
        "我的议题",
        "待办",
        "换议事室",
    ]
    assert await Chat(services, "V1:convener").menu() == [*BASE, "待办", "换议事室"]
    # A role counts in its own room only.
    assert await Chat(services, "V1:member").menu("V2") == [*BASE, "待办", "换议事室"]
    assert await Chat(services, "CITY:admin").menu("V1") == [*BASE, "待办", "换议事室"]


async def test_party_assigns_a_topic(world: World, services: Services) -> None:
    party = Chat(services, "V1:party")
    await party.menu()
    assert (await party.press("m:party")).startswith("请用一句话写下议题标题")
    await party.write("老旧小区加装电梯", "5栋住户多为老人")
    await party.press("s:next")
    summary = await party.press("s:skip")
    assert "来源：党政点题" in summary and "联名委员" not in summary
    receipt = await party.press("s:confirm")
    assert "议题已提交！\n编号：D1-2026-000001" in receipt
    [topic] = await topics(world)
    assert (topic.source, topic.submitter_id) == ("party", world.person("V1", Role.PARTY))
    [card] = await outbox(world, "V1:convener")
    assert "来源：党政点题" in card.body["text"] and "受理" in dict(card.body["buttons"])


async def test_member_recommends_a_topic_alone(world: World, services: Services) -> None:
    member = Chat(services, "V1:member")
    await member.menu()
    await member.type("委员荐题")  # typed instead of pressed
    await member.write()
    await member.press("s:next")
    [summary] = await member.send("text", "13812345678")
    assert "来源：委员荐题" in summary.text and "联名委员：无" in summary.text
    assert [b.label for b in summary.buttons] == ["确认提交", "修改", "邀请联名", "取消"]
    assert "议题已提交" in await member.press("s:confirm")
    [topic] = await topics(world)
    assert (topic.source, topic.submitter_id, topic.contact_phone) == (
        "member",
        world.person("V1", Role.MEMBER),
        "13812345678",
    )
    assert "来源：委员荐题" in (await outbox(world, "V1:convener"))[-1].body["text"]


REFUSED = "「{}」只有一村议事室的{}可以使用，您不能使用。如有想法，可以点“提议题”提出。"


async def test_a_resident_cannot_use_the_other_sources(world: World, services: Services) -> None:
    resident = Chat(services, "-:resident")
    await resident.menu()
    assert await resident.type("委员荐题") == REFUSED.format("委员荐题", "政协委员")
    assert await resident.press("m:party") == REFUSED.format("党政点题", "党组织书记")  # forged
    assert await resident.press("m:grid") == REFUSED.format("网格推题", "网格员")
    # Nor can a member of another room, nor one with another role here.
    other = Chat(services, "V2:member")
    await other.menu("V1")
    assert await other.press("m:member") == REFUSED.format("委员荐题", "政协委员")
    grid = Chat(services, "V1:grid")
    await grid.menu()
    assert await grid.press("m:party") == REFUSED.format("党政点题", "党组织书记")
    assert await topics(world) == []
    assert [action for action, _ in await refusals(world)] == ["source.refused"] * 5


async def _joint(world: World, services: Services) -> tuple[Chat, list[int], str, str]:
    """A member asks two others to co-sign; returns the two co-signers' answer buttons."""
    first = await add_member(world, "V1", "王委员")
    second = await add_member(world, "V1", "李委员")
    member = Chat(services, "V1:member")
    await member.menu()
    await member.press("m:member")
    await member.write("河道清淤", "夏季异味明显")
    await member.press("s:next")
    await member.press("s:skip")
    [asked] = await member.send("button", payload="s:cosign")
    # Other members of the room, not the member themself nor anyone else.
    assert [b.label for b in asked.buttons] == ["王委员", "李委员", "完成"]
    await member.press(f"j:{first}")
    await member.press(f"j:{second}")
    assert await member.press(f"j:{world.person('V1', Role.CONVENER)}") == (
        "只能邀请本议事室的其他政协委员联名。\n"
        "请选择邀请联名的委员（再点一次可取消，最多 10 位），选好后点“完成”。"
        "确认提交后，每位委员确认联名，议题才会提交。"
    )
    summary = await member.press("s:done")
    assert "联名委员：王委员、李委员" in summary
    assert await member.press("s:confirm") == (
        "已请 2 位委员确认联名：王委员、李委员。全部确认后议题自动提交，结果会通知您；"
        "如有委员不联名，议题不提交。"
    )
    assert await topics(world) == []
    [ask_first] = await outbox(world, "王委员")
    [ask_second] = await outbox(world, "李委员")
    assert ask_first.body["text"].startswith("V1-member邀请您联名推荐议题：\n议事室：一村议事室")
    assert [label for label, _ in ask_first.body["buttons"]] == ["确认联名", "不联名"]
    return (
        member,
        [first, second],
        ask_first.body["buttons"][0][1],
        ask_second.body["buttons"][1][1],
    )


async def test_a_joint_recommendation_opens_once_every_cosigner_confirms(
    world: World, services: Services
) -> None:
    _, cosigners, yes, _ = await _joint(world, services)
    first, second = Chat(services, "王委员"), Chat(services, "李委员")
    # Someone else pressing a co-signer's button is refused and changes nothing.
    assert await Chat(services, "-:resident").press(yes) == "这个联名邀请不是发给您的，您不能答复。"
    assert (
        await Chat(services, "V1:convener").press(yes) == "这个联名邀请不是发给您的，您不能答复。"
    )
    assert await first.press("cs:made-up:y") == "这个联名邀请无效，或不是本平台发出的。"
    assert await first.press(yes) == "您已确认联名，还在等待 1 位委员确认。"
    assert await first.press(yes) == "您已经答复过这个联名邀请，不能再次答复。"
    assert await topics(world) == []
    [ask_second] = await outbox(world, "李委员")
    opened = await second.press(ask_second.body["buttons"][0][1])
    assert opened == "您已确认联名。所有委员均已确认，议题已提交：D1-2026-000001「河道清淤」。"
    [topic] = await topics(world)
    assert (topic.source, topic.submitter_id) == ("member", world.person("V1", Role.MEMBER))
    assert topic.facts["submit"] == {"cosigners": cosigners}
    async with world.sessions() as session:
        [event] = await session.exec(select(TopicEvent).where(TopicEvent.topic_id == topic.id))
    assert event.fields["cosigners"] == cosigners and event.actor_id == topic.submitter_id
    told = (await outbox(world, "V1:member"))[-1].body["text"]
    assert told.startswith("联名推荐的议题已获全部委员确认。\n议题已提交！\n编号：D1-2026-000001")
    assert "来源：委员荐题" in (await outbox(world, "V1:convener"))[-1].body["text"]
    assert await second.press(ask_second.body["buttons"][1][1]) == (
        "您已经答复过这个联名邀请，不能再次答复。"
    )
    assert [reason for _, reason in await refusals(world)] == [
        "not_addressed",
        "not_addressed",
        "forged",
        "used",
        "used",
    ]


async def test_one_declining_cosigner_stops_a_joint_recommendation(
    world: World, services: Services
) -> None:
    _, _, yes, second_no = await _joint(world, services)
    assert (
        await Chat(services, "李委员").press(second_no)
        == "您已答复不联名，议题「河道清淤」不会提交。"
    )
    assert await Chat(services, "王委员").press(yes) == "这个联名推荐已经结束，无需再答复。"
    assert await topics(world) == []
    told = (await outbox(world, "V1:member"))[-1].body["text"]
    assert told.startswith("李委员不同意联名，联名推荐的议题「河道清淤」没有提交。")
    assert len(await outbox(world, "王委员")) == 2  # the invitation, and that it ended


async def test_a_cosigner_who_lost_the_role_cannot_confirm(
    world: World, services: Services
) -> None:
    _, cosigners, yes, _ = await _joint(world, services)
    async with transaction(world.sessions) as session:
        for grant in await session.exec(
            select(RoleGrant).where(RoleGrant.person_id == cosigners[0])
        ):
            grant.revoked_at = world.clock.now()
    assert await Chat(services, "王委员").press(yes) == "您已不是该议事室的政协委员，不能联名。"
    assert await topics(world) == []


async def test_a_residents_landline_typed_full_width_is_taken_normalised(
    world: World, services: Services
) -> None:
    grid = Chat(services, "V1:grid")
    await grid.menu()
    await grid.press("m:grid")
    await grid.type("张大爷")
    assert (await grid.type("（０５１７）８３６６ １２３４")).startswith("请用一句话写下议题标题")
    await grid.write("楼道堆物", "3单元楼道堆满杂物")
    assert "联系电话：0517-83661234" in await grid.press("s:next")
    assert "议题已提交" in await grid.press("s:confirm")
    [topic] = await topics(world)
    assert topic.contact_phone == "0517-83661234"


async def test_grid_worker_pushes_a_topic_for_a_named_resident(
    world: World, services: Services
) -> None:
    grid = Chat(services, "V1:grid")
    await grid.menu()
    assert (await grid.press("m:grid")).startswith("请发送您代为反映的居民姓名")
    assert (await grid.type("张" * 21)).startswith("内容太长：最多 20 个字")
    assert (await grid.type("张大爷")).startswith("请发送该居民的手机号")
    assert await grid.type("12345") == (
        "电话号码格式不正确，请发送该居民的 11 位手机号，或带区号的固定电话（如 0517-83661234）。"
    )
    assert (await grid.type("139 0000 1111")).startswith("请用一句话写下议题标题")
    await grid.write("楼道堆物", "3单元楼道堆满杂物")
    summary = await grid.press("s:next")  # no phone step: the resident's phone is known
    assert "联系电话：13900001111" in summary and "代为反映的居民：张大爷" in summary
    assert "来源：网格推题" in summary
    assert "议题已提交" in await grid.press("s:confirm")
    [topic] = await topics(world)
    async with world.sessions() as session:
        resident = await session.get(Person, topic.submitter_id)
    assert resident is not None and (resident.display_name, resident.phone) == (
        "张大爷",
        "13900001111",
    )
    assert (topic.source, topic.contact_phone) == ("grid", "13900001111")
    card = (await outbox(world, "V1:convener"))[-1].body["text"]
    assert "来源：网格推题" in card and "提议人：张** 139****1111" in card
    # Without a chat identity the resident gets nothing, and nothing is queued for them.
    async with world.sessions() as session:
        queued = await session.exec(
            select(OutboxMessage).where(OutboxMessage.person_id == resident.id)
        )
        assert queued.all() == []

    # The same phone again: the same resident, not a second one.
    await grid.press("m:grid")
    await grid.type("张师傅")
    await grid.type("13900001111")
    await grid.write("路灯不亮", "3号楼前路灯不亮")
    await grid.press("s:next")
    await grid.press("s:confirm")
    assert [t.submitter_id for t in await topics(world)] == [resident.id, resident.id]


async def test_a_reachable_resident_gets_the_follow_ups(world: World, services: Services) -> None:
    async with transaction(world.sessions) as session:
        resident = await session.get(Person, world.person("-", "resident"))
        assert resident is not None
        resident.phone = "13700001111"
    grid = Chat(services, "V1:grid")
    await grid.menu()
    await grid.press("m:grid")
    await grid.type("居民甲")
    await grid.type("13700001111")
    await grid.write()
    await grid.press("s:next")
    # Corrected before confirming: edits go back to the summary.
    await grid.press("s:edit")
    await grid.press("e:phone")
    assert "联系电话：13700001111" in await grid.type("13700001111")
    await grid.press("s:confirm")
    [topic] = await topics(world)
    assert topic.submitter_id == world.person("-", "resident")
    [told] = await outbox(world, "-:resident")
    assert told.kind == "topic.submitted"
    assert told.body["text"].startswith("网格员为您反映的议题「运河步道增设公厕」")
    # …and later ones too, e.g. the first review's outcome.
    await world.walk(topic, ["decline"])
    assert (await outbox(world, "-:resident"))[-1].kind == "topic.declined"


async def test_two_cosigners_confirming_at_once_open_the_topic_once(
    world: World, services: Services
) -> None:
    await _joint(world, services)
    [ask_first] = await outbox(world, "王委员")
    [ask_second] = await outbox(world, "李委员")
    answers = await asyncio.gather(
        Chat(services, "王委员").press(ask_first.body["buttons"][0][1]),
        Chat(services, "李委员").press(ask_second.body["buttons"][0][1]),
    )
    assert sorted(a[:6] for a in answers) == ["您已确认联名", "您已确认联名"]
    assert sum("议题已提交" in a for a in answers) == 1, answers
    assert len(await topics(world)) == 1


async def test_a_joint_recommendation_nobody_finished_lapses_with_one_message(
    world: World, services: Services
) -> None:
    """Expiry is one declarative Reminder (notices/reminders/), swept like the others."""
    await _joint(world, services)
    world.clock.set(world.clock.now() + timedelta(days=8))  # Tue 03-10 10:00, office hours
    sweeper = services.sweeper()
    await sweeper.run_once()
    await sweeper.run_once()  # a second sweep gives nothing again
    lapsed = [m for m in await outbox(world, "V1:member") if m.kind == "reminder.joint.lapsed"]
    assert [m.body["text"] for m in lapsed] == [
        "您发起的联名推荐议题「河道清淤」在 7 天内没有得到全部委员的确认，已自动结束，"
        "议题没有提交。如仍需推荐，可以重新发起。"
    ]
    assert await topics(world) == []


def test_one_source_rule_the_chat_offering_only_a_role_held_in_the_room() -> None:
    """``permissions.source_role`` is the one rule; an admin of the room or one above may
    open any source through the lifecycle, while the chat offers a source only to its own
    role in that very room (``dialogs.sources.offered``)."""
    from dialogs.sources import offered
    from storage.models import Room
    from workflow.lifecycle import Source
    from workflow.permissions import Actor, source_role

    room = Room(id=2, code="V1", name="一村议事室", level="village", parent_id=1)
    admin_above = Actor(7, frozenset({(1, Role.ADMIN)}))
    member = Actor(8, frozenset({(2, Role.MEMBER)}))
    assert source_role(admin_above, Source.MEMBER, [2, 1]) == Role.ADMIN
    assert source_role(admin_above, Source.MEMBER, [2, 1], admin=False) is None
    assert not offered(admin_above, room, Source.MEMBER)
    assert offered(admin_above, room, Source.PUBLIC)
    assert offered(member, room, Source.MEMBER) and not offered(member, room, Source.PARTY)
