"""Role invites: ``mashangyi invite`` → a link / temporary QR code → opening it in the chat
binds the identity to the role; refusals; ``mashangyi roles``; the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlmodel import SQLModel, col, select, text
from telegram import Update
from wechatpy import parse_message

from bot import telegram as telegram_channel
from bot.cli import CliError, build_parser, main, run
from bot.config import load_config
from bot.invites import parse_validity
from bot.services import Services, build_services
from bot.wechat.messages import to_inbound
from dialogs.types import Inbound, Reply, invite_payload
from storage.db import make_engine, make_session_factory, transaction
from storage.models import AuditEntry, DialogState, Invite, RoleGrant, Room, Topic
from storage.models import Person as PersonRow
from tests.fakes.wechat_api import QRCODE_CREATE, FakeWeChatAPI
from tests.qr_decode import decode
from tests.world import ROOMS
from workflow.clock import FixedClock
from workflow.errors import NotPermitted
from workflow.invites import create_invite, new_secret, redeem, secret_hash
from workflow.lifecycle import Role
from workflow.permissions import load_actor
from workflow.rooms import get_room, import_rooms, parse_rooms_csv

BOT = "mashangyi_test_bot"
PAYLOAD = re.compile(r"[A-Za-z0-9_-]+")
PAYLOADS = Path(__file__).with_name("payloads")


# -- set-up --------------------------------------------------------------------------------


#: A WeChat account needs the key that signs review links (bot/services.py).
SIGNING = {"secret_key": "test-secret-key-0123456789"}


def write_config(path: Path, database_url: str, **sections: dict[str, str]) -> Path:
    lines = [f'[database]\nurl = "{database_url}"', "[dialogs]\nflood_messages = 1000"]
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f'{key} = "{value}"' for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def config_path(tmp_path: Path, database_url: str) -> Path:
    return write_config(tmp_path / "c.toml", database_url, telegram={"bot_username": BOT})


@pytest.fixture
async def services(config_path: Path, engine: Any, clock: FixedClock) -> AsyncIterator[Services]:
    """Services on the test clock; the command line (``cli``) is given the same clock."""
    services = build_services(load_config(config_path, env={}), clock=clock)
    async with transaction(services.sessions) as session:
        await import_rooms(session, parse_rooms_csv(ROOMS.encode()), clock.now())
    yield services
    await services.close()


@pytest.fixture
async def wechat() -> AsyncIterator[FakeWeChatAPI]:
    fake = FakeWeChatAPI()
    await fake.start()
    yield fake
    await fake.close()


Cli = Callable[..., Awaitable[None]]


@pytest.fixture
def cli(clock: FixedClock) -> Cli:
    async def command(config: Path, *args: str) -> None:
        """Run one command in this event loop (``main`` would start its own)."""
        assert await run(["--config", str(config), *args], clock=clock, env={}) == 0

    return command


async def invite_link(
    cli: Cli, config: Path, capsys: pytest.CaptureFixture[str], *args: str, room: str = "V1"
) -> tuple[str, str]:
    """``mashangyi invite``: (the Telegram deep link printed, the start payload in it)."""
    capsys.readouterr()
    await cli(config, "invite", "--room", room, "--out", str(config.parent / "png"), *args)
    out = capsys.readouterr().out
    [link] = re.findall(r"^Telegram: (\S+)$", out, re.M)
    [payload] = parse_qs(urlparse(link).query)["start"]
    return link, payload


class Person:
    """Someone opening links in a chat."""

    def __init__(self, services: Services, ref: str, channel: str = "telegram") -> None:
        self.services, self.ref, self.channel = services, ref, channel
        self.count = 0

    async def send(self, kind: str, **kw: Any) -> list[Reply]:
        self.count += 1
        return await self.services.dialogs.handle(
            Inbound(self.channel, self.ref, kind, message_id=f"{self.ref}-{self.count}", **kw)  # type: ignore[arg-type]
        )

    async def open(self, payload: str) -> str:
        return "\n".join(r.text for r in await self.send("start", payload=payload))

    async def person_id(self) -> int:
        from storage.models import ChannelIdentity

        async with self.services.sessions() as session:
            found = await session.exec(
                select(ChannelIdentity.person_id).where(
                    ChannelIdentity.channel == self.channel,
                    ChannelIdentity.external_id == self.ref,
                )
            )
            return found.one()


async def rows(services: Services, model: type[SQLModel], *where: Any) -> list[Any]:
    async with services.sessions() as session:
        query = select(model).where(*where).order_by(col(model.id))  # type: ignore[attr-defined]
        return list(await session.exec(query))


async def audit(services: Services, action: str) -> list[AuditEntry]:
    return await rows(services, AuditEntry, AuditEntry.action == action)


async def room_id(services: Services, code: str) -> int:
    async with services.sessions() as session:
        room = await get_room(session, code)
        assert room is not None and room.id is not None
        return room.id


async def new_invite(
    services: Services,
    role: str = Role.CONVENER,
    room: str = "V1",
    validity: timedelta = timedelta(hours=72),
    created_by_id: int | None = None,
) -> str:
    """An invite made in code (as a reviewer's own invite will be); its start payload."""
    secret = new_secret()
    async with transaction(services.sessions) as session:
        room_row = await get_room(session, room)
        assert room_row is not None
        await create_invite(
            session,
            room=room_row,
            role=role,
            secret=secret,
            now=services.clock.now(),
            validity=validity,
            created_by_id=created_by_id,
        )
    return invite_payload(secret)


GRANTED = "身份确认成功！您已成为一村议事室的召集人。"
USED = "这个邀请已经被使用过了"
UNKNOWN = "这个邀请无效"
REVOKED = "这个邀请已被管理员作废"


# -- the happy path ----------------------------------------------------------------------------


async def test_a_cli_invite_opened_in_telegram_grants_the_role_and_is_audited(
    cli: Cli,
    services: Services,
    config_path: Path,
    tmp_path: Path,
    clock: FixedClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "png"
    capsys.readouterr()
    await cli(config_path, "invite", "--room", "V1", "--role", "convener", "--out", str(out))
    printed = capsys.readouterr().out
    assert "召集人 (convener) of V1 一村议事室" in printed
    assert "valid until 2026-03-05 10:00 (China time)" in printed  # 72 h by default
    [link] = re.findall(r"^Telegram: (\S+)$", printed, re.M)
    assert link.startswith(f"https://t.me/{BOT}?start=i_")
    [payload] = parse_qs(urlparse(link).query)["start"]
    assert len(payload) <= 64 and PAYLOAD.fullmatch(payload)
    [png] = out.glob("invite-*-telegram.png")
    assert decode(png) == {link}

    # Opened through the Telegram adapter, exactly as /start <payload> arrives.
    data = json.loads((PAYLOADS / "telegram" / "start.json").read_text("utf-8"))
    data["message"]["text"] = f"/start {payload}"
    incoming = telegram_channel.to_inbound(Update.de_json(data, None))
    assert incoming is not None and incoming.inbound.payload == payload
    replies = await services.dialogs.handle(incoming.inbound)
    assert replies[0].text.startswith(GRANTED)
    assert [b.payload for b in replies[0].buttons] == ["m:submit", "m:mine", "m:todo", "m:room"]

    [invite] = await rows(services, Invite)
    [grant] = await rows(services, RoleGrant)
    person = await Person(services, "1001").person_id()
    assert (grant.person_id, grant.room_id, grant.role) == (
        person,
        await room_id(services, "V1"),
        "convener",
    )
    # Made on the command line: no inviting person, but the invite it came through.
    assert (grant.granted_by_id, grant.invite_id, grant.granted_at) == (
        None,
        invite.id,
        clock.now(),
    )
    assert (invite.used_at, invite.used_by_id) == (clock.now(), person)
    [state] = await rows(services, DialogState)
    assert state.data["room"] == "V1"
    [granted] = await audit(services, "role.grant")
    assert granted.actor_id == person
    assert granted.subject == {
        "grant_id": grant.id,
        "person_id": person,
        "room": "V1",
        "role": "convener",
        "invite_id": invite.id,
        "granted_by_id": None,
        "channel": "telegram",
    }
    assert len(await audit(services, "invite.create")) == 1
    async with services.sessions() as session:
        actor = await load_actor(session, person)
    assert actor.roles_in(grant.room_id) == {"convener"}

    # Only the hash is kept: the secret is in no row of any table.
    secret = payload.removeprefix("i_")
    assert invite.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    async with services.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            dump = str((await conn.execute(text(f'SELECT * FROM "{table.name}"'))).all())
            assert secret not in dump, table.name


async def test_an_inviter_is_recorded_as_granted_by(services: Services) -> None:
    inviter = Person(services, "inviter")
    await inviter.open("")  # say hello, so the person exists
    inviter_id = await inviter.person_id()
    payload = await new_invite(services, Role.PARTY, created_by_id=inviter_id)
    assert "党组织书记" in await Person(services, "new").open(payload)
    [grant] = await rows(services, RoleGrant)
    assert (grant.role, grant.granted_by_id) == ("party", inviter_id)


async def test_wechat_gets_a_temporary_qr_code_whose_scene_redeems(
    cli: Cli,
    services: Services,
    tmp_path: Path,
    database_url: str,
    wechat: FakeWeChatAPI,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(
        tmp_path / "wechat.toml",
        database_url,
        wechat={
            "app_id": wechat.app_id,
            "app_secret": wechat.app_secret,
            "api_base_url": wechat.base_url,
        },
        server=SIGNING,
    )
    out = tmp_path / "png"
    capsys.readouterr()
    await cli(
        config, "invite", "--room", "V2", "--role", "grid", "--expires", "7d", "--out", str(out)
    )
    printed = capsys.readouterr().out
    assert "no Telegram link" in printed
    [created] = [r.json for r in wechat.calls(QRCODE_CREATE)]
    assert created["action_name"] == "QR_STR_SCENE"
    assert created["expire_seconds"] == 7 * 24 * 3600
    scene = created["action_info"]["scene"]["scene_str"]
    assert scene.startswith("i_") and len(scene) <= 64 and PAYLOAD.fullmatch(scene)
    url = f"http://weixin.qq.com/q/{scene}"  # what the fake answers
    assert f"WeChat:   {url} (temporary QR code, expires in 604800 s)" in printed
    [png] = out.glob("invite-*-wechat.png")
    assert decode(png) == {url}

    # A new follower scanning it: the subscribe event through the WeChat adapter.
    xml = (PAYLOADS / "wechat" / "subscribe_scene.xml").read_text("utf-8")
    xml = xml.replace("qrscene_r_V1", f"qrscene_{scene}")
    inbound = to_inbound(parse_message(xml))
    assert inbound is not None and inbound.payload == scene
    [reply] = await services.dialogs.handle(inbound)
    assert reply.text.startswith("身份确认成功！您已成为二村议事室的网格员。")
    [grant] = await rows(services, RoleGrant)
    assert (grant.role, grant.room_id) == ("grid", await room_id(services, "V2"))

    # 30 days is WeChat's limit, and ours.
    await cli(
        config, "invite", "--room", "V2", "--role", "grid", "--expires", "30d", "--out", str(out)
    )
    assert wechat.calls(QRCODE_CREATE)[-1].json["expire_seconds"] == 30 * 24 * 3600


async def test_a_wechat_refusal_stores_no_invite(
    cli: Cli, services: Services, tmp_path: Path, database_url: str, wechat: FakeWeChatAPI
) -> None:
    config = write_config(
        tmp_path / "wechat.toml",
        database_url,
        wechat={
            "app_id": wechat.app_id,
            "app_secret": wechat.app_secret,
            "api_base_url": wechat.base_url,
        },
        server=SIGNING,
        telegram={"bot_username": BOT},
    )
    wechat.script(QRCODE_CREATE, errcode=45009, errmsg="reach max api daily quota limit")
    with pytest.raises(CliError, match="no invite was stored"):
        await cli(config, "invite", "--room", "V1", "--role", "party", "--out", str(tmp_path))
    assert await rows(services, Invite) == []


# -- refusals ---------------------------------------------------------------------------------


async def test_a_used_invite_is_refused_to_anyone_else(
    cli: Cli, services: Services, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, payload = await invite_link(cli, config_path, capsys, "--role", "convener")
    first, second = Person(services, "first"), Person(services, "second")
    assert (await first.open(payload)).startswith(GRANTED)
    assert (await second.open(payload)).startswith(USED)
    # The one who used it is told they already hold the role, not that it is used up.
    assert "您已经用过这个邀请，现在是一村议事室的召集人" in await first.open(payload)

    [grant] = await rows(services, RoleGrant)
    assert grant.person_id == await first.person_id()
    refused = await audit(services, "invite.refuse")
    assert [(r.actor_id, r.subject["reason"]) for r in refused] == [
        (await second.person_id(), "used"),
        (await first.person_id(), "used"),
    ]
    # The refusal left the second person where they were: no room chosen for them.
    [state] = await rows(services, DialogState, DialogState.external_id == "second")
    assert "room" not in state.data


async def test_an_expired_invite_is_refused(services: Services, clock: FixedClock) -> None:
    early = await new_invite(services, validity=timedelta(minutes=30))
    late = await new_invite(services, validity=timedelta(minutes=30))
    clock.advance(timedelta(minutes=29, seconds=59))
    assert (await Person(services, "on-time").open(early)).startswith(GRANTED)
    clock.advance(timedelta(seconds=1))  # exactly at expiry: over
    reply = await Person(services, "too-late").open(late)
    assert reply == "这个邀请已于 2026年3月2日 10:30 过期。请向管理员索取新的邀请。"
    [grant] = await rows(services, RoleGrant)
    assert grant.person_id == await Person(services, "on-time").person_id()
    [_, unused] = await rows(services, Invite)
    assert unused.used_at is None
    [refused] = await audit(services, "invite.refuse")
    assert refused.subject["reason"] == "expired"


async def test_a_revoked_invite_is_refused(
    cli: Cli, services: Services, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, payload = await invite_link(cli, config_path, capsys, "--role", "operator")
    [invite] = await rows(services, Invite)
    await cli(config_path, "invite", "revoke", str(invite.id))
    assert f"invite {invite.id} (平台操作人员 (operator)) revoked" in capsys.readouterr().out
    with pytest.raises(CliError, match=f"invite {invite.id} was already revoked at 2026-03-02"):
        await cli(config_path, "invite", "revoke", str(invite.id))

    assert (await Person(services, "late").open(payload)).startswith(REVOKED)
    assert await rows(services, RoleGrant) == []
    [refused] = await audit(services, "invite.refuse")
    assert (refused.subject["reason"], refused.subject["invite_id"]) == ("revoked", invite.id)
    assert len(await audit(services, "invite.revoke")) == 1


async def test_a_used_invite_cannot_be_revoked_the_role_can(
    cli: Cli, services: Services, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, payload = await invite_link(cli, config_path, capsys, "--role", "member")
    await Person(services, "member").open(payload)
    [invite] = await rows(services, Invite)
    with pytest.raises(CliError, match=r"already used .* revoke the role instead"):
        await cli(config_path, "invite", "revoke", str(invite.id))
    with pytest.raises(CliError, match="no invite with id 999"):
        await cli(config_path, "invite", "revoke", "999")


@pytest.mark.parametrize(
    "forge",
    [
        lambda secret: new_secret(),  # well-formed, never issued
        lambda secret: secret[:-1] + ("A" if secret[-1] != "A" else "B"),  # one character off
        lambda secret: secret[:20],  # cut short
        lambda secret: secret_hash(secret),  # what a leaked database would give
        lambda secret: "",
        lambda secret: "../" + secret,
    ],
    ids=["unknown", "altered", "truncated", "hash", "empty", "junk"],
)
async def test_an_unknown_or_forged_invite_is_refused(services: Services, forge: Any) -> None:
    real = await new_invite(services)
    forged = "i_" + forge(real.removeprefix("i_"))
    assert (await Person(services, "mallory").open(forged)).startswith(UNKNOWN)
    assert await rows(services, RoleGrant) == []
    [invite] = await rows(services, Invite)
    assert invite.used_at is None
    [refused] = await audit(services, "invite.refuse")
    assert refused.subject == {"reason": "unknown", "channel": "telegram"}
    assert (await Person(services, "owner").open(real)).startswith(GRANTED)  # still usable


async def test_a_role_already_held_is_not_granted_twice_but_the_invite_is_used(
    services: Services,
) -> None:
    holder = Person(services, "holder")
    assert (await holder.open(await new_invite(services))).startswith(GRANTED)
    again = await new_invite(services)
    assert await holder.open(again) == "您已经是一村议事室的召集人，身份不变。这个邀请已随之作废。"
    grants = await rows(services, RoleGrant)
    assert len(grants) == 1
    invites = await rows(services, Invite)
    assert [i.used_by_id for i in invites] == [await holder.person_id()] * 2
    [use] = await audit(services, "invite.use")
    assert use.subject["already_held"] is True and use.subject["grant_id"] == grants[0].id
    assert (await Person(services, "other").open(again)).startswith(USED)


async def test_two_people_racing_for_one_invite_exactly_one_wins(services: Services) -> None:
    """On PostgreSQL these run as concurrent transactions; the row's conditional update
    decides."""
    payload = await new_invite(services)
    people = [Person(services, f"racer{n}") for n in range(6)]
    answers = await asyncio.gather(*(p.open(payload) for p in people))
    assert sum(a.startswith(GRANTED) for a in answers) == 1
    assert sum(a.startswith(USED) for a in answers) == 5
    [grant] = await rows(services, RoleGrant)
    [invite] = await rows(services, Invite)
    winner = people[next(n for n, a in enumerate(answers) if a.startswith(GRANTED))]
    assert grant.person_id == invite.used_by_id == await winner.person_id()
    assert [r.subject["reason"] for r in await audit(services, "invite.refuse")] == ["used"] * 5


async def test_the_same_invite_opened_twice_at_once_by_one_person_grants_once(
    services: Services,
) -> None:
    payload = await new_invite(services)
    person = Person(services, "eager")
    answers = await asyncio.gather(person.open(payload), person.open(payload))
    assert sorted(a[:5] for a in answers) == sorted([GRANTED[:5], "您已经用过"])
    assert len(await rows(services, RoleGrant)) == 1


# -- roles ------------------------------------------------------------------------------------


async def test_a_revoked_role_no_longer_permits_an_action(services: Services) -> None:
    convener = Person(services, "convener")
    await convener.open(await new_invite(services))
    person_id = await convener.person_id()
    [grant] = await rows(services, RoleGrant)
    resident = Person(services, "resident", "console")
    await resident.send("start", payload="r_V1")
    async with transaction(services.sessions) as session:
        room = await get_room(session, "V1")
        assert room is not None
        topic, _ = await services.lifecycle.open_topic(
            session,
            room=room,
            actor=await load_actor(session, await resident.person_id()),
            source="public",
            title="路灯坏了",
        )
        assert "screen_accept" in await services.lifecycle.available_actions(
            session, topic, await load_actor(session, person_id)
        )

    async with transaction(services.sessions) as session:
        from workflow.invites import revoke_grant

        await revoke_grant(session, grant.id or 0, services.clock.now())
    async with transaction(services.sessions) as session:
        fresh = await session.get(Topic, topic.id)
        assert fresh is not None
        with pytest.raises(NotPermitted):
            await services.lifecycle.apply(
                session,
                fresh,
                "screen_accept",
                await load_actor(session, person_id),
                category="协商议事",
                reason="涉及群众共同利益",
            )
    [revoked] = await audit(services, "role.revoke")
    assert revoked.subject == {
        "grant_id": grant.id,
        "person_id": person_id,
        "room": "V1",
        "role": "convener",
    }


async def _people_with_roles(database_url: str, clock: FixedClock) -> dict[str, int]:
    """Rooms, an inviter, and two people who took roles through invites (for the sync
    command-line tests)."""
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    try:
        async with transaction(sessions) as session:
            await import_rooms(session, parse_rooms_csv(ROOMS.encode()), clock.now())
            inviter = PersonRow(display_name="区政协管理员")
            wang = PersonRow(display_name="王召集")
            li = PersonRow(display_name="李书记")
            session.add_all([inviter, wang, li])
            await session.flush()
            from storage.models import ChannelIdentity

            session.add(ChannelIdentity(person_id=wang.id, channel="telegram", external_id="42"))
            session.add(ChannelIdentity(person_id=wang.id, channel="wechat", external_id="oWang"))
            for person, room, role, by in (
                (wang, "V1", Role.CONVENER, None),
                (li, "V2", Role.PARTY, inviter.id),
            ):
                secret = new_secret()
                room_row = await get_room(session, room)
                assert room_row is not None
                await create_invite(
                    session,
                    room=room_row,
                    role=role,
                    secret=secret,
                    now=clock.now(),
                    validity=timedelta(days=1),
                    created_by_id=by,
                )
                assert person.id is not None
                assert (await redeem(session, secret, person.id, clock.now())).ok
        return {"inviter": inviter.id or 0, "wang": wang.id or 0, "li": li.id or 0}
    finally:
        await engine.dispose()


@pytest.fixture
def roles_config(empty_db: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "roles.toml", empty_db)


def test_roles_list_and_revoke_on_the_command_line(
    roles_config: Path, empty_db: str, clock: FixedClock, capsys: pytest.CaptureFixture[str]
) -> None:
    people = asyncio.run(_people_with_roles(empty_db, clock))
    capsys.readouterr()
    assert main(["--config", str(roles_config), "roles", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(g["room"], g["role"], g["person"]) for g in listed] == [
        ("V1", "convener", "王召集"),
        ("V2", "party", "李书记"),
    ]
    wang, li = listed
    assert wang["identities"] == [
        {"channel": "telegram", "id": "42"},
        {"channel": "wechat", "id": "oWang"},
    ]
    assert (wang["granted_by"], wang["room_name"], wang["role_label"]) == (
        None,
        "一村议事室",
        "召集人",
    )
    assert li["granted_by"] == {"person_id": people["inviter"], "name": "区政协管理员"}
    assert datetime.fromisoformat(wang["granted_at"]) == clock.now()

    assert main(["--config", str(roles_config), "roles", "list", "--room", "V2"]) == 0
    out = capsys.readouterr().out
    assert "李书记" in out and "王召集" not in out
    assert f"by 区政协管理员 (#{people['inviter']}) through invite" in out
    assert out.rstrip().endswith("1 live role grants")

    assert main(["--config", str(roles_config), "roles", "revoke", str(wang["id"])]) == 0
    assert f"role grant {wang['id']} revoked: person #{people['wang']} is no longer 召集人" in (
        capsys.readouterr().out
    )
    assert main(["--config", str(roles_config), "roles", "revoke", str(wang["id"])]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mashangyi: role grant {wang['id']} was already revoked at ")
    assert err.count("\n") == 1
    assert main(["--config", str(roles_config), "roles", "revoke", "9999"]) == 1
    assert "no role grant with id 9999" in capsys.readouterr().err

    assert main(["--config", str(roles_config), "roles", "list", "--json"]) == 0
    assert [g["person"] for g in json.loads(capsys.readouterr().out)] == ["李书记"]

    async def audited() -> list[tuple[str, Any]]:
        engine = make_engine(empty_db)
        try:
            async with make_session_factory(engine)() as session:
                entries = await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))
                return [(e.action, e.subject.get("grant_id")) for e in entries]
        finally:
            await engine.dispose()

    assert [a for a in asyncio.run(audited()) if a[0].startswith("role.")] == [
        ("role.grant", wang["id"]),
        ("role.grant", li["id"]),
        ("role.revoke", wang["id"]),
    ]


def test_roles_list_of_an_unknown_room_is_one_line(
    roles_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(roles_config), "roles", "list", "--room", "NOPE"]) == 1
    assert (
        capsys.readouterr().err
        == "mashangyi: no room with code 'NOPE' (see `mashangyi rooms list`)\n"
    )


# -- the invite command's input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("72h", timedelta(hours=72)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
        ("720h", timedelta(days=30)),
    ],
)
def test_expiry_values(given: str, expected: timedelta) -> None:
    assert parse_validity(given) == expected


@pytest.mark.parametrize("given", ["31d", "721h", "0h", "72", "1.5h", "h", "-1d", "7 d", "1w", ""])
def test_a_bad_expiry_is_one_clear_line(
    roles_config: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    args = ["--config", str(roles_config), "invite", "--room", "V1", "--role", "party"]
    assert main([*args, f"--expires={given}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mashangyi: --expires {given!r}: ") and err.count("\n") == 1


async def test_invite_needs_a_known_room_and_a_configured_channel(
    cli: Cli, services: Services, config_path: Path, tmp_path: Path, database_url: str
) -> None:
    with pytest.raises(CliError, match="no room with code 'NOPE'"):
        await cli(config_path, "invite", "--room", "NOPE", "--role", "party")
    bare = write_config(tmp_path / "bare.toml", database_url)
    with pytest.raises(CliError, match=r"neither WeChat .* nor Telegram"):
        await cli(bare, "invite", "--room", "V1", "--role", "party")
    with pytest.raises(CliError, match="invite needs --room CODE and --role ROLE"):
        await cli(config_path, "invite", "--room", "V1")
    assert await rows(services, Invite) == []


def test_admin_cannot_be_handed_out_by_invite(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["invite", "--room", "V1", "--role", "admin"])
    assert "invalid choice: 'admin'" in capsys.readouterr().err


def test_secrets_fit_both_platforms() -> None:
    payloads = {invite_payload(new_secret()) for _ in range(200)}
    assert len(payloads) == 200
    assert all(len(p) <= 64 and PAYLOAD.fullmatch(p) for p in payloads)


async def test_an_invite_gives_the_role_in_its_room_only(services: Services) -> None:
    person = Person(services, "scoped")
    await person.open(await new_invite(services, Role.SUPERVISOR, room="T1"))
    async with services.sessions() as session:
        actor = await load_actor(session, await person.person_id())
        rooms = {r.code: r.id for r in await session.exec(select(Room))}
    assert actor.grants == frozenset({(rooms["T1"], "supervisor")})
