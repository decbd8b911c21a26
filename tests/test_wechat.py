"""The WeChat channel through its boundaries: signed (and encrypted) webhook requests to the
real aiohttp app, and a fake WeChat API on loopback recording what the service sends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xmltodict
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, select
from wechatpy import parse_message
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from bot.config import load_config
from bot.media import MediaTooLarge
from bot.services import Services, build_services
from bot.web import create_app
from bot.wechat.client import TEXT_BYTES, WeChatAPIError
from bot.wechat.envelope import MAX_BODY
from bot.wechat.messages import OPENID_MAX, cdata, reply_text, to_inbound
from bot.wechat.outbound import WeChatSender
from bot.wechat.webhook import WEBHOOK
from dialogs.router import Handled
from dialogs.types import Button, Inbound, Location, Media, Reply
from notices.message import OutboundMessage
from notices.outbox import enqueue
from storage.db import transaction
from storage.models import (
    Attachment,
    ChannelIdentity,
    DialogState,
    InboundReceipt,
    OutboxMessage,
    Person,
    RoleGrant,
    Room,
    Topic,
)
from tests.fakes.wechat_api import (
    CUSTOM_SEND,
    MEDIA_GET,
    QRCODE_CREATE,
    STABLE_TOKEN,
    TEMPLATE_SEND,
    FakeWeChatAPI,
)
from tests.world import ROOMS
from workflow.clock import FixedClock
from workflow.rooms import import_rooms, parse_rooms_csv

PAYLOADS = Path(__file__).parent / "payloads" / "wechat"
#: The passive reply to a message kept to be handled a moment later.
KEPT = "系统繁忙，您的消息已收到，稍后回复。"
OPENID = "oBq0b6Yb6qA3JdS2sHuFjOq8KxEw"
ACCOUNT = "gh_3ad4b2c1e0f9"
TOKEN = "mSy7callbackTok3n"
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")
TEMPLATE_ID = "Jx8kYl2mQz5tN7vR9wB3cD6fH1gK4pS0uE_2aMnOqLs"
# WeChat's published safe-mode sample (the WXBizMsgCrypt demo in every language).
SAMPLE_TOKEN = "QDG6eK"
SAMPLE_APP_ID = "wx5823bf96d3bd56c7"
SAMPLE_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
SAMPLE_TIMESTAMP = "1409659813"
SAMPLE_NONCE = "1372623149"
SAMPLE_MSG_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
SAMPLE_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
SAMPLE_BODY = (
    f"<xml><ToUserName><![CDATA[{SAMPLE_APP_ID}]]></ToUserName>"
    f"<Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt>"
    "<AgentID><![CDATA[218]]></AgentID></xml>"
)


def payload(name: str, **fields: str) -> str:
    """A stored payload, with the text of some elements replaced (``Content="…"``)."""
    xml = (PAYLOADS / f"{name}.xml").read_text("utf-8")
    for tag, value in fields.items():
        xml, found = re.subn(
            rf"<{tag}>(<!\[CDATA\[.*?\]\]>|[^<]*)</{tag}>",
            lambda _m, tag=tag, value=value: f"<{tag}><![CDATA[{split_cdata(value)}]]></{tag}>",
            xml,
            flags=re.S,
        )
        assert found == 1, tag
    return xml


def split_cdata(text: str) -> str:
    """How WeChat itself puts a ``]]>`` typed by a person into CDATA."""
    return text.replace("]]>", "]]]]><![CDATA[>")


def sha1_sorted(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signed(
    clock: FixedClock, token: str = TOKEN, nonce: str = "1405251523", **extra: str
) -> dict[str, str]:
    timestamp = str(int(clock.now().timestamp()))
    return {
        "signature": sha1_sorted(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": OPENID,
        **extra,
    }


class RecordingDialogs:
    """Stands in for ``services.dialogs``: records each Inbound, then asks the real dialogs
    (or answers ``canned`` replies)."""

    def __init__(self, inner: Any = None, canned: Sequence[Reply] = ()) -> None:
        self.inner, self.canned = inner, list(canned)
        self.seen: list[Inbound] = []

    async def handle(self, inbound: Inbound) -> list[Reply]:
        return (await self.process(inbound)).replies

    async def process(self, inbound: Inbound, **options: Any) -> Handled:
        self.seen.append(inbound)
        if self.inner is not None:
            return await self.inner.process(inbound, **options)
        return Handled(list(self.canned))


@dataclass
class Harness:
    services: Services
    client: TestClient
    clock: FixedClock
    fake: FakeWeChatAPI
    dialogs: RecordingDialogs
    token: str = TOKEN
    msg_ids: list[int] = field(default_factory=lambda: [24967543217650000])

    async def post(self, xml: str | bytes, **query: str) -> ClientResponse:
        return await self.client.post(
            "/wechat", params=signed(self.clock, self.token) | query, data=xml
        )

    async def text(self, content: str) -> str:
        """Send a text message as the resident; return the passive reply's Content."""
        self.msg_ids[0] += 1
        response = await self.post(payload("text", Content=content, MsgId=str(self.msg_ids[0])))
        assert response.status == 200
        return reply_content(await response.text())

    async def sealed(
        self, inner: str, *, alongside: str = "", doctype: str = "", **query: str
    ) -> ClientResponse:
        """``inner`` encrypted and signed with ``msg_signature``, as WeChat sends it in safe
        mode; ``alongside``: a plaintext message whose elements share the envelope, as in
        compatible mode; ``doctype``: put before the envelope."""
        base = signed(self.clock, self.token, encrypt_type="aes")
        body, msg_signature = encrypted(
            inner, base["nonce"], base["timestamp"], app_id=self.fake.app_id, alongside=alongside
        )
        return await self.client.post(
            "/wechat",
            params=base | {"msg_signature": msg_signature} | query,
            data=doctype + body,
        )

    def sender(self) -> WeChatSender:
        sender = self.services.senders["wechat"]
        assert isinstance(sender, WeChatSender)
        return sender


def reply_content(body: str) -> str:
    reply = xmltodict.parse(body)["xml"]
    assert (reply["ToUserName"], reply["FromUserName"], reply["MsgType"]) == (
        OPENID,
        ACCOUNT,
        "text",
    )
    return reply["Content"]


Start = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeChatAPI]:
    fake = FakeWeChatAPI()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def start(
    database_url: str, engine: AsyncEngine, clock: FixedClock, tmp_path: Path, fake: FakeWeChatAPI
) -> AsyncIterator[Start]:
    """Builds the real services and app for a [wechat] configuration; cleans up after."""
    running: list[Harness] = []

    async def make(
        *, canned: Sequence[Reply] | None = None, flood: int = 1000, **wechat: Any
    ) -> Harness:
        settings = {
            "app_id": fake.app_id,
            "app_secret": fake.app_secret,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            # Most tests send plaintext, which compatible mode (with a key) accepts.
            "message_mode": "compatible",
            "api_base_url": fake.base_url,
            "template_id": TEMPLATE_ID,
        } | wechat
        lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
        path = tmp_path / f"config{len(running)}.toml"
        path.write_text(
            # A WeChat account needs the key that signs review links (bot/services.py).
            f'[server]\nsecret_key = "test-secret-key-0123456789"\n'
            f'[database]\nurl = "{database_url}"\n[media]\ndir = "media"\n'
            f"[dialogs]\nflood_messages = {flood}\n[wechat]\n{lines}",
            "utf-8",
        )
        services = build_services(load_config(path, env={}), clock=clock)
        async with transaction(services.sessions) as session:
            await import_rooms(session, parse_rooms_csv(ROOMS.encode()), clock.now())
        dialogs = RecordingDialogs(None if canned is not None else services.dialogs, canned or ())
        services.dialogs = dialogs  # type: ignore[assignment]
        client = TestClient(TestServer(create_app(services, run_outbox=False)))
        await client.start_server()
        harness = Harness(services, client, clock, fake, dialogs, token=settings["token"])
        running.append(harness)
        return harness

    yield make
    for harness in running:
        await harness.client.close()  # also closes the WeChat API client (app cleanup)
        await harness.services.close()


async def count(engine: AsyncEngine, model: type[SQLModel]) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(model))).scalar_one()


async def nothing_stored(engine: AsyncEngine) -> bool:
    models = (Person, ChannelIdentity, DialogState, InboundReceipt, OutboxMessage, Attachment)
    return [await count(engine, model) for model in models] == [0] * len(models)


# -- verification ---------------------------------------------------------------------------


async def test_url_verification_echoes_echostr_only_when_signed(
    start: Start, clock: FixedClock
) -> None:
    h = await start()
    ok = await h.client.get("/wechat", params=signed(clock, echostr="7044863917583211421"))
    assert (ok.status, await ok.text()) == (200, "7044863917583211421")

    forged = signed(clock, echostr="7044863917583211421") | {"signature": "0" * 40}
    response = await h.client.get("/wechat", params=forged)
    assert response.status == 403
    assert "7044863917583211421" not in await response.text()
    other_token = signed(clock, token="not-our-token", echostr="1")
    assert (await h.client.get("/wechat", params=other_token)).status == 403
    captured = signed(clock, echostr="1")
    clock.advance(timedelta(minutes=6))  # the same signed query, replayed later
    assert (await h.client.get("/wechat", params=captured)).status == 403


async def test_forged_signature_is_refused_and_nothing_is_stored(
    start: Start, engine: AsyncEngine, clock: FixedClock
) -> None:
    h = await start()
    body = payload("subscribe_scene")
    for query in (
        signed(clock) | {"signature": sha1_sorted("guess", "1", "2")},
        signed(clock) | {"nonce": "another-nonce"},  # signature no longer matches
        {k: v for k, v in signed(clock).items() if k != "signature"},
        {"signature": "é" * 40, "timestamp": "x", "nonce": ""},  # non-ASCII: no crash
    ):
        response = await h.client.post("/wechat", params=query, data=body)
        assert response.status == 403
    assert h.dialogs.seen == []
    assert await nothing_stored(engine)
    # The same body, correctly signed, does get through (so the 403s were the signature).
    assert (await h.post(body)).status == 200
    assert len(h.dialogs.seen) == 1
    assert not await nothing_stored(engine)


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
async def test_a_stale_or_future_timestamp_is_refused(
    start: Start, engine: AsyncEngine, clock: FixedClock, skew: timedelta
) -> None:
    h = await start()
    query = signed(clock)  # signed now …
    clock.advance(skew)  # … arriving six minutes later (or, from a fast clock, earlier)
    response = await h.client.post("/wechat", params=query, data=payload("text"))
    assert response.status == 403
    assert h.dialogs.seen == []
    assert await nothing_stored(engine)


async def test_a_timestamp_within_five_minutes_is_accepted(start: Start, clock: FixedClock) -> None:
    h = await start(canned=[])
    query = signed(clock)
    clock.advance(timedelta(minutes=4, seconds=59))
    response = await h.client.post("/wechat", params=query, data=payload("text"))
    assert (response.status, await response.text()) == (200, "success")


async def test_no_route_without_a_callback_token(start: Start, clock: FixedClock) -> None:
    h = await start(token="")
    assert (
        await h.client.post("/wechat", params=signed(clock), data=payload("text"))
    ).status == 404


# -- hostile bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["billion_laughs", "external_entity"])
async def test_xml_entities_are_refused(start: Start, engine: AsyncEngine, name: str) -> None:
    h = await start()
    response = await h.post(payload(name))
    assert response.status == 400
    assert "lol" not in await response.text()
    assert h.dialogs.seen == []
    assert await nothing_stored(engine)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not xml at all",
        "<xml>only text</xml>",
        "<xml><FromUserName>x</FromUserName></xml>",  # no MsgType
        "<xml><MsgType>text</MsgType><Content>no sender</Content></xml>",
        payload("image").replace("<MediaId>", "<NoMediaId>").replace("</MediaId>", "</NoMediaId>"),
        payload("location").replace("33.610382", "north"),
        payload("location").replace("33.610382", "nan"),  # JSON columns refuse NaN
        b"<xml><MsgType>text</MsgType><Content>\xff\xfe</Content></xml>",
    ],
)
async def test_malformed_bodies_are_a_400(start: Start, engine: AsyncEngine, body: Any) -> None:
    h = await start()
    assert (await h.post(body)).status == 400
    assert h.dialogs.seen == []
    assert await nothing_stored(engine)


async def test_a_body_over_the_cap_is_a_413(start: Start, engine: AsyncEngine) -> None:
    h = await start(canned=[Reply("收到")])
    padding = "x" * MAX_BODY
    big = payload("text", Content=padding)
    response = await h.post(big)  # with a Content-Length
    assert response.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to trust
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096].encode()

    response = await h.post(chunks())
    assert response.status == 413
    assert h.dialogs.seen == []
    assert await nothing_stored(engine)
    # Just under the cap is fine.
    fits = payload("text", Content="x" * (MAX_BODY - len(payload("text", Content=""))))
    assert len(fits.encode()) == MAX_BODY
    assert (await h.post(fits)).status == 200


# -- safe mode ----------------------------------------------------------------------------------


def test_the_published_sample_decrypts_and_our_encryption_round_trips() -> None:
    crypto = WeChatCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_APP_ID)
    assert sha1_sorted(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT) == (
        SAMPLE_MSG_SIGNATURE
    )
    plain = crypto.decrypt_message(
        SAMPLE_BODY, SAMPLE_MSG_SIGNATURE, SAMPLE_TIMESTAMP, SAMPLE_NONCE
    )
    message = parse_message(plain)
    assert (message.source, message.content, message.id) == (
        "mycreate",
        "hello",
        4561255354251345929,
    )
    sealed = xmltodict.parse(crypto.encrypt_message("<xml>往返</xml>", "42", "1409659900"))["xml"]
    assert sealed["MsgSignature"] == sha1_sorted(
        SAMPLE_TOKEN, "1409659900", "42", sealed["Encrypt"]
    )
    assert (
        crypto.decrypt_message(
            {"Encrypt": sealed["Encrypt"]}, sealed["MsgSignature"], "1409659900", "42"
        )
        == "<xml>往返</xml>"
    )
    with pytest.raises(InvalidSignatureException):
        crypto.decrypt_message(SAMPLE_BODY, "0" * 40, SAMPLE_TIMESTAMP, SAMPLE_NONCE)


async def test_safe_mode_with_the_published_sample(start: Start, clock: FixedClock) -> None:
    clock.set(datetime.fromtimestamp(int(SAMPLE_TIMESTAMP), UTC))
    h = await start(
        token=SAMPLE_TOKEN,
        encoding_aes_key=SAMPLE_AES_KEY,
        message_mode="safe",
        app_id=SAMPLE_APP_ID,
        canned=[Reply("收到：hello")],
    )
    query = signed(clock, token=SAMPLE_TOKEN, nonce=SAMPLE_NONCE) | {
        "encrypt_type": "aes",
        "msg_signature": SAMPLE_MSG_SIGNATURE,
    }
    response = await h.client.post("/wechat", params=query, data=SAMPLE_BODY)
    assert response.status == 200
    assert h.dialogs.seen == [
        Inbound("wechat", "mycreate", "text", text="hello", message_id="4561255354251345929")
    ]
    # The reply is encrypted too, signed over the ciphertext, and decrypts to our text.
    sealed = xmltodict.parse(await response.text())["xml"]
    assert "hello" not in await response.text()
    assert sealed["MsgSignature"] == sha1_sorted(
        SAMPLE_TOKEN, sealed["TimeStamp"], sealed["Nonce"], sealed["Encrypt"]
    )
    crypto = WeChatCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_APP_ID)
    plain = crypto.decrypt_message(
        {"Encrypt": sealed["Encrypt"]}, sealed["MsgSignature"], sealed["TimeStamp"], sealed["Nonce"]
    )
    reply = xmltodict.parse(plain)["xml"]
    assert (reply["ToUserName"], reply["Content"]) == ("mycreate", "收到：hello")


def encrypted(
    xml: str,
    nonce: str,
    timestamp: str,
    *,
    app_id: str,
    key: str = AES_KEY,
    alongside: str = "",
) -> tuple[str, str]:
    """(envelope body, msg_signature) as WeChat sends them in safe mode, or in compatible
    mode when ``alongside`` (a plaintext message) is given: its elements, then Encrypt."""
    secret = base64.b64decode(key + "=")
    ciphertext = PrpCrypto(secret).encrypt(xml, app_id).decode()
    sealed = f"<Encrypt><![CDATA[{ciphertext}]]></Encrypt></xml>"
    if alongside:
        body = alongside.replace("</xml>", sealed)
    else:
        body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>{sealed}"
    return body, sha1_sorted(TOKEN, timestamp, nonce, ciphertext)


def unseal(body: str, *, app_id: str, key: str = AES_KEY, token: str = TOKEN) -> dict[str, str]:
    """An encrypted reply, checked (its signature covers the ciphertext) and opened."""
    sealed = xmltodict.parse(body)["xml"]
    assert set(sealed) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert sealed["MsgSignature"] == sha1_sorted(
        token, sealed["TimeStamp"], sealed["Nonce"], sealed["Encrypt"]
    )
    crypto = WeChatCrypto(token, key, app_id)
    plain = crypto.decrypt_message(
        {"Encrypt": sealed["Encrypt"]}, sealed["MsgSignature"], sealed["TimeStamp"], sealed["Nonce"]
    )
    return xmltodict.parse(plain)["xml"]


async def test_safe_mode_refusals(start: Start, engine: AsyncEngine, clock: FixedClock) -> None:
    h = await start(message_mode="safe")
    query = signed(clock, encrypt_type="aes")
    ts, nonce = query["timestamp"], query["nonce"]
    good, msg_signature = encrypted(payload("text"), nonce, ts, app_id=h.fake.app_id)

    async def post(body: str, signature: str) -> int:
        response = await h.client.post(
            "/wechat", params=query | {"msg_signature": signature}, data=body
        )
        return response.status

    assert await post(good, "0" * 40) == 403  # msg_signature does not cover this ciphertext
    assert await post(good, "") == 403
    other_app, sig = encrypted(payload("text"), nonce, ts, app_id="wx_someone_else")
    assert await post(other_app, sig) == 400
    assert await post(f"<xml><ToUserName>{ACCOUNT}</ToUserName></xml>", msg_signature) == 400
    hostile, sig = encrypted(payload("billion_laughs"), nonce, ts, app_id=h.fake.app_id)
    assert await post(hostile, sig) == 400
    # Correctly signed garbage (only someone with the token can make it) is still a 400.
    for garbage in ("", "AAAA", "!!!!", base64.b64encode(bytes(16)).decode(), "A" * 64):
        body = f"<xml><Encrypt><![CDATA[{garbage}]]></Encrypt></xml>"
        assert await post(body, sha1_sorted(TOKEN, ts, nonce, garbage)) == 400, garbage
    assert h.dialogs.seen == []
    assert await nothing_stored(engine)
    assert await post(good, msg_signature) == 200
    assert [i.text for i in h.dialogs.seen] == ["运河步道增设公厕"]


# -- message modes (明文 / 兼容 / 安全) ------------------------------------------------------------

NEIGHBOUR = "oNeighbour0000000000000000000"


async def dialog_state(h: Harness, openid: str) -> tuple[str, str, dict[str, Any]] | None:
    async with h.services.sessions() as session:
        state = (
            await session.exec(select(DialogState).where(DialogState.external_id == openid))
        ).one_or_none()
    return None if state is None else (state.flow, state.step, state.data)


async def test_safe_mode_refuses_a_captured_query_with_a_plaintext_body(
    start: Start, engine: AsyncEngine, clock: FixedClock
) -> None:
    """The plaintext ``signature`` covers token, timestamp and nonce only: with a captured
    query anyone could post any plaintext body, such as another resident's 取消."""
    h = await start(message_mode="safe")
    await h.sealed(payload("subscribe_scene", FromUserName=NEIGHBOUR))
    asked = await h.sealed(payload("text", FromUserName=NEIGHBOUR, Content="1", MsgId="501"))
    assert unseal(await asked.text(), app_id=h.fake.app_id)["Content"].startswith(
        "请用一句话写下议题标题"
    )
    before = await dialog_state(h, NEIGHBOUR)
    assert before is not None and before[:2] == ("submit_topic", "title")
    counts = [await count(engine, m) for m in (Person, ChannelIdentity, OutboxMessage)]
    seen, api_calls = len(h.dialogs.seen), len(h.fake.requests)

    captured = signed(clock)  # a valid plaintext query, as WeChat signs every request
    attacks = [
        payload("text", FromUserName=NEIGHBOUR, Content="取消", MsgId="502"),
        payload("text", FromUserName="oInvented000000000000000000", Content="你好"),
        payload("subscribe_scene", FromUserName="oInvented000000000000000000"),
    ]
    aes = captured | {"encrypt_type": "aes", "msg_signature": captured["signature"]}
    junk = "<Encrypt><![CDATA[" + base64.b64encode(bytes(64)).decode() + "]]></Encrypt></xml>"
    for body in attacks:
        for query, sent, status in (
            (captured, body, 403),
            (aes, body, 400),  # claims encryption, carries none
            (aes, body.replace("</xml>", junk), 403),  # msg_signature does not cover it
        ):
            response = await h.client.post("/wechat", params=query, data=sent)
            assert response.status == status
            assert "<xml>" not in await response.text()

    assert await dialog_state(h, NEIGHBOUR) == before
    assert [await count(engine, m) for m in (Person, ChannelIdentity, OutboxMessage)] == counts
    assert await h.services.dispatcher().run_once() == 0
    assert (len(h.dialogs.seen), len(h.fake.requests)) == (seen, api_calls)
    # The neighbour's own 取消, encrypted, does cancel: the 403s were the mode.
    cancelled = await h.sealed(payload("text", FromUserName=NEIGHBOUR, Content="取消", MsgId="503"))
    assert unseal(await cancelled.text(), app_id=h.fake.app_id)["Content"].startswith("已取消")
    assert await dialog_state(h, NEIGHBOUR) != before


async def test_compatible_mode_reads_the_encrypted_part_and_refuses_it_unsigned(
    start: Start, engine: AsyncEngine, clock: FixedClock
) -> None:
    h = await start(canned=[Reply("收到")])  # the harness's default: compatible
    inner = payload("text", Content="运河步道增设公厕", MsgId="601")
    outer = payload("text", Content="取消", MsgId="601")  # what a tamperer would change
    response = await h.sealed(inner, alongside=outer)
    assert response.status == 200
    assert [i.text for i in h.dialogs.seen] == ["运河步道增设公厕"]
    assert "收到" not in await response.text()  # answered encrypted, as asked
    assert unseal(await response.text(), app_id=h.fake.app_id)["Content"] == "收到"

    # An Encrypt that msg_signature does not cover is refused, plaintext or not beside it.
    forged = payload("text", Content="运河步道增设公厕", MsgId="602")
    assert (await h.sealed(forged, alongside=outer, msg_signature="0" * 40)).status == 403
    assert (await h.sealed(forged, alongside=outer, msg_signature="")).status == 403
    base = signed(clock)
    unflagged, _ = encrypted(forged, base["nonce"], base["timestamp"], app_id=h.fake.app_id)
    assert (await h.client.post("/wechat", params=base, data=unflagged)).status == 403
    both, _ = encrypted(
        forged, base["nonce"], base["timestamp"], app_id=h.fake.app_id, alongside=outer
    )
    assert (await h.client.post("/wechat", params=base, data=both)).status == 403
    assert len(h.dialogs.seen) == 1

    # Plaintext alone is still accepted in compatible mode, and answered in plaintext.
    plain = await h.post(payload("text", Content="沿线没有公厕", MsgId="603"))
    assert reply_content(await plain.text()) == "收到"
    assert [i.text for i in h.dialogs.seen] == ["运河步道增设公厕", "沿线没有公厕"]


async def test_plain_mode_refuses_encrypted_bodies(start: Start, clock: FixedClock) -> None:
    h = await start(encoding_aes_key="", message_mode="plain", canned=[Reply("收到")])
    text = payload("text", Content="运河步道增设公厕")
    assert (await h.sealed(text)).status == 403
    assert (await h.sealed(text, alongside=text)).status == 403
    base = signed(clock)  # an Encrypt beside the plaintext, without the flag: refused too
    body, _ = encrypted(
        text, base["nonce"], base["timestamp"], app_id=h.fake.app_id, alongside=text
    )
    assert (await h.client.post("/wechat", params=base, data=body)).status == 403
    assert h.dialogs.seen == []
    assert reply_content(await (await h.post(text)).text()) == "收到"
    assert [i.text for i in h.dialogs.seen] == ["运河步道增设公厕"]


MODES = ["plain", "compatible", "safe"]


async def start_in(start: Start, mode: str, **settings: Any) -> Harness:
    key = {"encoding_aes_key": ""} if mode == "plain" else {}
    return await start(message_mode=mode, **key, **settings)


async def send(h: Harness, mode: str, xml: str, doctype: str = "") -> ClientResponse:
    """``xml`` as WeChat sends it in ``mode``, with ``doctype`` before the envelope."""
    if mode == "plain":
        return await h.post(doctype + xml)
    return await h.sealed(xml, alongside=xml if mode == "compatible" else "", doctype=doctype)


def doctypes(h: Harness) -> list[str]:
    return [
        # An external DTD on a host that records requests: nothing may be fetched.
        f'<?xml version="1.0"?>\n<!DOCTYPE xml SYSTEM "{h.fake.base_url}evil.dtd">\n',
        '<!DOCTYPE xml PUBLIC "-//W3C//DTD XHTML 1.0//EN" "http://example.invalid/x.dtd">',
        "<!DOCTYPE xml [<!ELEMENT xml ANY>]>",  # internal, and without a single entity
        "<!DOCTYPE xml>",
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_any_doctype_is_refused_in_every_mode(
    start: Start, engine: AsyncEngine, mode: str
) -> None:
    h = await start_in(start, mode)
    text = payload("text")
    for doctype in doctypes(h):
        response = await send(h, mode, text, doctype=doctype)
        assert response.status == 400, doctype
        if mode != "plain":  # the decrypted XML is checked as well
            assert (await h.sealed(doctype + text)).status == 400, doctype
    assert h.dialogs.seen == []
    assert h.fake.requests == []
    assert await nothing_stored(engine)


@pytest.mark.parametrize("mode", MODES)
async def test_a_person_may_write_doctype_in_a_message(start: Start, mode: str) -> None:
    h = await start_in(start, mode, canned=[Reply("收到")])
    written = '<!DOCTYPE xml SYSTEM "http://example.invalid/x.dtd"> 是什么？'
    response = await send(h, mode, payload("text", Content=written))
    assert response.status == 200
    assert [i.text for i in h.dialogs.seen] == [written]


# -- translation ---------------------------------------------------------------------------------


def _inbound(kind: str, message_id: str, **kw: Any) -> Inbound:
    return Inbound("wechat", OPENID, kind, message_id=message_id, **kw)  # type: ignore[arg-type]


TRANSLATIONS = {
    "subscribe_scene": _inbound("start", f"{OPENID}:1772416800:subscribe_scan", payload="r_V1"),
    "scan": _inbound("start", f"{OPENID}:1772416860:SCAN", payload="r_V2"),
    "subscribe": _inbound("start", f"{OPENID}:1772416920:subscribe", payload=""),
    "text": _inbound("text", "24967543217643360", text="运河步道增设公厕"),
    "text_menu_tap": _inbound("button", "24967543217643361", text="确认提交", payload="s:confirm"),
    "image": _inbound(
        "image",
        "24967543217643362",
        media=Media(
            "Q1hM3ZcJ0b4wJk8hYzG2rVxW9eT6pLnA5sDfKj7uHyBgNmQoXcEiRt4vUw8zSa1", "image/jpeg"
        ),
    ),
    "voice_recognition": _inbound(
        "voice",
        "24967543217643363",
        media=Media(
            "vN8pT2sLq4XcR7yB1mJ6wZ0aK3eH9gD5fU2iO8nV4tQ7rE1yW6xC3bM0lP9kS5j",
            "audio/amr",
            "步道沿线三公里没有厕所。",
        ),
    ),
    "location": _inbound(
        "location",
        "24967543217643364",
        location=Location(33.610382, 119.015285, "江苏省淮安市清江浦区里运河文化长廊"),
    ),
    "video": _inbound("unsupported", "24967543217643365", unsupported="video"),
    "file": _inbound("unsupported", "24967543217643366", unsupported="file"),
    "link": _inbound("unsupported", "24967543217643367", unsupported="link"),
}


@pytest.mark.parametrize("name", list(TRANSLATIONS))
async def test_each_kind_reaches_the_dialogs_as_the_right_inbound(start: Start, name: str) -> None:
    h = await start()  # the real dialogs behind the recorder: every kind gets a reply
    response = await h.post(payload(name))
    assert response.status == 200
    assert h.dialogs.seen == [TRANSLATIONS[name]]
    assert reply_content(await response.text())  # something was said, as XML to the resident


@pytest.mark.parametrize("name", list(TRANSLATIONS))
def test_translation_without_http(name: str) -> None:
    assert to_inbound(parse_message(payload(name))) == TRANSLATIONS[name]


@pytest.mark.parametrize("name", ["unsubscribe", "click", "template_send_job_finish"])
async def test_other_events_are_acknowledged_without_the_dialogs(
    start: Start, engine: AsyncEngine, name: str
) -> None:
    h = await start()
    response = await h.post(payload(name))
    assert (response.status, await response.text()) == (200, "success")
    assert h.dialogs.seen == []
    assert await nothing_stored(engine)


# -- poison messages: never a 5xx that WeChat would send again ----------------------------------


async def test_a_from_user_name_wechat_cannot_have_is_refused_with_success(
    start: Start, engine: AsyncEngine
) -> None:
    h = await start()
    stranger = payload("text", FromUserName="o" * 200)
    for _ in range(2):  # and delivered again: the same answer, nothing stored
        response = await h.post(stranger)
        assert (response.status, await response.text()) == (200, "success")
    assert h.dialogs.seen == []
    assert await nothing_stored(engine)
    assert await h.text("菜单")  # the next message, from a real openid, is served
    assert await count(engine, Person) == 1


def test_from_user_names_up_to_the_bound_are_taken() -> None:
    at_bound = to_inbound(parse_message(payload("text", FromUserName="o" * OPENID_MAX)))
    assert at_bound is not None and at_bound.user_ref == "o" * OPENID_MAX
    assert to_inbound(parse_message(payload("text", FromUserName="o" * (OPENID_MAX + 1)))) is None


async def test_a_msg_id_longer_than_a_receipt_key_still_has_one_effect(
    start: Start, engine: AsyncEngine
) -> None:
    h = await start()
    body = payload("text", Content="菜单", MsgId="7" * 200)
    first = await h.post(body)
    again = await h.post(body)
    assert first.status == again.status == 200
    assert reply_content(await first.text()) == reply_content(await again.text())
    async with h.services.sessions() as session:
        (receipt,) = (await session.exec(select(InboundReceipt))).all()
    assert len(receipt.key) <= 160
    assert len(h.dialogs.seen) == 2 and h.dialogs.seen[0] == h.dialogs.seen[1]


# -- replies ------------------------------------------------------------------------------------


async def test_user_text_cannot_break_out_of_the_reply_xml(start: Start) -> None:
    title = "步道]]><ToUserName>x</ToUserName><MsgType>news</MsgType>公厕"
    h = await start(canned=[Reply(f"标题：{title}")])
    response = await h.post(payload("text", Content=title))
    assert response.status == 200
    assert h.dialogs.seen[0].text == title  # it arrived intact, too
    body = await response.text()
    reply = xmltodict.parse(body)["xml"]
    assert reply["ToUserName"] == OPENID  # one ToUserName, ours
    assert reply["MsgType"] == "text"
    assert reply["Content"] == f"标题：{title}"
    assert cdata("a]]>b]]>") == "a]]]]><![CDATA[>b]]]]><![CDATA[>"


async def test_several_replies_become_one_text_with_numbered_options(start: Start) -> None:
    replies = [
        Reply("已收到照片。", (Button("旧按钮", "old"),)),
        Reply("请选择：", (Button("确认提交", "s:confirm"), Button("修改", "s:edit"))),
        Reply("回复“取消”可随时退出。"),
    ]
    expected = (
        "已收到照片。\n\n请选择：\n请回复数字：\n1. 确认提交\n2. 修改\n\n回复“取消”可随时退出。"
    )
    assert reply_text(replies) == expected
    h = await start(canned=replies)
    assert await h.text("照片") == expected


async def test_no_replies_is_success(start: Start) -> None:
    h = await start(canned=[])
    response = await h.post(payload("text"))
    assert (response.status, await response.text()) == (200, "success")


# -- whole dialogs ----------------------------------------------------------------------------


async def test_a_summary_longer_than_a_passive_reply_continues_through_the_outbox(
    start: Start,
) -> None:
    """A 2,000-character description makes a summary of ~6 KB; WeChat takes ~2 KB per
    message: the passive reply carries the first piece, the rest follows in order."""
    h = await start()
    await h.post(payload("subscribe_scene"))
    await h.text("1")
    await h.text("运河步道增设公厕")
    description = "沿线3公里没有公厕，老人散步很不方便。" * 105  # 1,995 characters
    await h.text(description)
    await h.text("1")
    first = await h.text("1")  # skip the phone number: the summary
    assert len(first.encode()) <= TEXT_BYTES
    assert first.startswith("请确认您的议题：")
    await h.services.dispatcher().drain()  # one chat's pieces go one per round, in order
    rest = [call.json["text"]["content"] for call in h.fake.calls(CUSTOM_SEND)]
    assert len(rest) >= 2 and all(len(piece.encode()) <= TEXT_BYTES for piece in rest)
    whole = first + "".join(rest)
    assert description[:500] in whole and description[-500:] in whole
    assert whole.endswith("请回复数字：\n1. 确认提交\n2. 修改\n3. 取消")
    assert (await h.text("1")).startswith("议题已提交！")  # the numbers still work


async def test_scan_a_rooms_code_and_submit_a_topic_by_text_replies(
    start: Start, engine: AsyncEngine, clock: FixedClock
) -> None:
    h = await start()
    response = await h.post(payload("subscribe_scene"))  # qrscene_r_V1
    welcome = reply_content(await response.text())
    assert welcome.startswith("欢迎来到一村议事室")
    assert "请回复数字：\n1. 提议题\n2. 我的议题\n3. 换议事室" in welcome

    assert (await h.text("1")).startswith("请用一句话写下议题标题")
    assert (await h.text("运河步道增设公厕")).startswith("请详细描述情况")
    assert "1. 下一步" in await h.text("沿线3公里没有公厕，老人散步很不方便。")
    assert "1. 跳过" in await h.text("1")
    summary = await h.text("1")
    assert "标题：运河步道增设公厕" in summary
    assert summary.endswith("请回复数字：\n1. 确认提交\n2. 修改\n3. 取消")
    receipt = await h.text("1")
    assert receipt.startswith("议题已提交！")

    async with h.services.sessions() as session:
        topic = (await session.exec(select(Topic))).one()
        identity = (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == OPENID))
        ).one()
    assert topic.number in receipt
    assert (topic.title, topic.state, topic.submitter_id) == (
        "运河步道增设公厕",
        "submitted",
        identity.person_id,
    )
    assert (identity.channel, identity.last_inbound_at) == ("wechat", clock.now())
    assert [i.kind for i in h.dialogs.seen] == ["start", *["text"] * 6]


async def test_a_retried_message_has_one_effect_and_the_same_reply(
    start: Start, engine: AsyncEngine
) -> None:
    h = await start()
    first = await h.post(payload("subscribe_scene"))
    again = await h.post(payload("subscribe_scene"))  # WeChat's retry after 5 seconds
    assert await first.text() == await again.text()
    title_step = await h.text("1")
    for _ in range(2):  # the same MsgId twice more: no second step taken
        response = await h.post(payload("text", Content="1", MsgId=str(h.msg_ids[0])))
        assert reply_content(await response.text()) == title_step
    assert await count(engine, InboundReceipt) == 2
    async with h.services.sessions() as session:
        state = (await session.exec(select(DialogState))).one()
    assert (state.flow, state.step) == ("submit_topic", "title")


# -- outbound: the sender -------------------------------------------------------------------------


async def last_wrote(h: Harness, ago: timedelta | None) -> None:
    """The resident wrote to us ``ago`` (None: never)."""
    async with transaction(h.services.sessions) as session:
        person = Person(display_name="居民")
        session.add(person)
        await session.flush()
        assert person.id is not None
        session.add(
            ChannelIdentity(
                person_id=person.id,
                channel="wechat",
                external_id=OPENID,
                last_inbound_at=h.clock.now() - ago if ago is not None else None,
            )
        )


async def deliver(h: Harness, key: str = "k1", **fields: Any) -> OutboxMessage:
    """Queue one message for the resident, run one delivery round, return the row."""
    message = OutboundMessage(
        text="您的议题已受理。\n编号：V1-2026-000001",
        topic_number="D1-2026-000001",
        url="https://mashangyi.test/t/D1-2026-000001",
    )
    async with transaction(h.services.sessions) as session:
        await enqueue(
            session,
            key=key,
            channel="wechat",
            address=OPENID,
            kind="topic.accepted",
            message=replace(message, **fields),
            now=h.clock.now(),
        )
    await h.services.dispatcher().run_once()
    async with h.services.sessions() as session:
        return (
            await session.exec(select(OutboxMessage).where(OutboxMessage.idempotency_key == key))
        ).one()


async def test_inside_the_window_a_customer_service_message(start: Start) -> None:
    h = await start()
    await last_wrote(h, timedelta(hours=47))
    row = await deliver(h)
    assert row.status == "sent"
    assert [r.json for r in h.fake.calls(CUSTOM_SEND)] == [
        {
            "touser": OPENID,
            "msgtype": "text",
            "text": {"content": "您的议题已受理。\n编号：V1-2026-000001"},
        }
    ]
    assert h.fake.calls(TEMPLATE_SEND) == []


async def test_a_long_card_goes_in_pieces_with_the_buttons_on_the_last(start: Start) -> None:
    h = await start()
    await last_wrote(h, timedelta(minutes=5))
    card = "\n".join(f"{n}. 运河步道增设公厕，沿线3公里没有公厕" for n in range(1, 121))
    row = await deliver(h, text=card, buttons=(Button("受理", "a:1:accept"),))
    assert row.status == "sent"
    calls = [call.json for call in h.fake.calls(CUSTOM_SEND)]
    assert [c["msgtype"] for c in calls] == ["text"] * (len(calls) - 1) + ["msgmenu"]
    shown = [c["text"]["content"] for c in calls[:-1]] + [calls[-1]["msgmenu"]["head_content"]]
    assert all(len(piece.encode()) <= TEXT_BYTES for piece in shown)
    assert "\n".join(shown) == card
    assert calls[-1]["msgmenu"]["list"] == [{"id": "a:1:accept", "content": "受理"}]


async def test_buttons_inside_the_window_become_a_msgmenu(start: Start) -> None:
    h = await start()
    await last_wrote(h, timedelta(minutes=5))
    row = await deliver(
        h, buttons=(Button("受理", "a:1:accept"), Button("不予受理", "a:1:decline"))
    )
    assert row.status == "sent"
    (call,) = h.fake.calls(CUSTOM_SEND)
    assert call.json["msgtype"] == "msgmenu"
    assert call.json["msgmenu"]["list"] == [
        {"id": "a:1:accept", "content": "受理"},
        {"id": "a:1:decline", "content": "不予受理"},
    ]


@pytest.mark.parametrize("ago", [timedelta(hours=48), timedelta(days=30), None])
async def test_outside_the_window_a_template_message(start: Start, ago: timedelta | None) -> None:
    h = await start()
    await last_wrote(h, ago)
    row = await deliver(h)
    assert row.status == "sent"
    assert h.fake.calls(CUSTOM_SEND) == []
    (call,) = h.fake.calls(TEMPLATE_SEND)
    assert call.json == {
        "touser": OPENID,
        "template_id": TEMPLATE_ID,
        "url": "https://mashangyi.test/t/D1-2026-000001",
        "data": {
            "character_string1": {"value": "D1-2026-000001"},
            "thing2": {"value": "您的议题已受理。"},
        },
    }


#: A reviewer's card exactly as notices/notify.py wrote it before the typed message
#: (version 0: no "v"), as rows already in the outbox at the upgrade hold it.
CARD_V0 = {
    "text": "新议题待初审：运河步道增设公厕\n来源：群众提议",
    "topic_number": "D1-2026-000001",
    "url": "https://mashangyi.test/t/D1-2026-000001",
    "buttons": [["受理", "b:tok-accept"], ["不予受理", "b:tok-decline"]],
    "review_url": "https://mashangyi.test/review/abc?exp=1&sig=x",
}


@pytest.mark.parametrize("ago", [timedelta(minutes=5), None])
async def test_a_row_written_before_bodies_had_a_version_is_delivered_as_before(
    start: Start, ago: timedelta | None
) -> None:
    """Inside the window a msgmenu with the card's buttons; outside it a template message
    with its number, linking to the review page rather than the public one."""
    h = await start()
    await last_wrote(h, ago)
    async with transaction(h.services.sessions) as session:
        session.add(
            OutboxMessage(
                idempotency_key="card",
                channel="wechat",
                address=OPENID,
                kind="topic.submitted",
                body=CARD_V0,
                not_before=h.clock.now(),
                created_at=h.clock.now(),
            )
        )
    assert await h.services.dispatcher().run_once() == 1
    async with h.services.sessions() as session:
        assert (await session.exec(select(OutboxMessage.status))).all() == ["sent"]
    if ago is not None:
        (call,) = h.fake.calls(CUSTOM_SEND)
        assert call.json["msgmenu"] == {
            "head_content": CARD_V0["text"],
            "list": [
                {"id": "b:tok-accept", "content": "受理"},
                {"id": "b:tok-decline", "content": "不予受理"},
            ],
            "tail_content": "",
        }
        assert h.fake.calls(TEMPLATE_SEND) == []
    else:
        (call,) = h.fake.calls(TEMPLATE_SEND)
        assert call.json == {
            "touser": OPENID,
            "template_id": TEMPLATE_ID,
            "url": CARD_V0["review_url"],
            "data": {
                "character_string1": {"value": "D1-2026-000001"},
                "thing2": {"value": "新议题待初审：运河步道增设公厕"},
            },
        }
        assert h.fake.calls(CUSTOM_SEND) == []


@pytest.mark.parametrize("errcode", [45015, 45047])
async def test_refused_as_out_of_window_falls_back_to_a_template(
    start: Start, errcode: int
) -> None:
    h = await start()
    await last_wrote(h, timedelta(hours=1))  # we think it is open; WeChat disagrees
    h.fake.script(CUSTOM_SEND, errcode=errcode, errmsg="response out of time limit")
    row = await deliver(h)
    assert row.status == "sent"
    assert h.fake.paths() == [STABLE_TOKEN, CUSTOM_SEND, TEMPLATE_SEND]


async def test_no_template_configured_leaves_the_row_dead_and_visible(start: Start) -> None:
    h = await start(template_id="")
    await last_wrote(h, timedelta(days=3))
    row = await deliver(h)
    assert row.status == "dead"
    assert row.last_error == (
        "undeliverable: outside the customer-service window, no subscription consent "
        "and no template configured"
    )
    assert h.fake.calls(TEMPLATE_SEND) == [] and h.fake.calls(CUSTOM_SEND) == []
    # The same holds when WeChat says the window has closed.
    await last_wrote_again(h)
    h.fake.script(CUSTOM_SEND, errcode=45015)
    assert (await deliver(h, key="k2")).status == "dead"


async def last_wrote_again(h: Harness) -> None:
    async with transaction(h.services.sessions) as session:
        identity = (await session.exec(select(ChannelIdentity))).one()
        identity.last_inbound_at = h.clock.now()


@pytest.mark.parametrize(
    "script",
    [
        {"status": 502},
        {"status": 503},
        {"errcode": -1, "errmsg": "system error"},
        {"disconnect": True},
    ],
)
async def test_server_trouble_is_temporary(start: Start, script: dict[str, Any]) -> None:
    h = await start()
    await last_wrote(h, timedelta(hours=1))
    h.fake.script(CUSTOM_SEND, **script)
    row = await deliver(h)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.not_before > h.clock.now()  # backed off
    assert row.last_error


async def test_other_errcodes_are_permanent_with_the_errcode(start: Start) -> None:
    h = await start()
    await last_wrote(h, timedelta(hours=1))
    h.fake.script(CUSTOM_SEND, errcode=40003, errmsg="invalid openid")
    row = await deliver(h)
    assert row.status == "dead"
    assert row.last_error == "errcode 40003: invalid openid"


async def test_a_wrong_secret_is_not_the_messages_fault(start: Start) -> None:
    h = await start(app_secret="wrong")
    await last_wrote(h, timedelta(hours=1))
    row = await deliver(h)
    assert row.status == "pending"  # retried once the operator fixes the secret
    assert "40125" in (row.last_error or "")


async def test_the_access_token_is_cached_and_renewed(start: Start, clock: FixedClock) -> None:
    h = await start()
    await last_wrote(h, timedelta(hours=1))
    for key in ("k1", "k2"):
        assert (await deliver(h, key=key)).status == "sent"
    assert h.fake.paths() == [STABLE_TOKEN, CUSTOM_SEND, CUSTOM_SEND]
    assert {r.query["access_token"] for r in h.fake.calls(CUSTOM_SEND)} == {"TOKEN-1"}

    h.fake.invalidate_tokens()  # e.g. another worker forced a refresh: 40001 on next use
    h.fake.requests.clear()
    assert (await deliver(h, key="k3")).status == "sent"
    assert h.fake.paths() == [CUSTOM_SEND, STABLE_TOKEN, CUSTOM_SEND]
    assert [r.query["access_token"] for r in h.fake.calls(CUSTOM_SEND)] == ["TOKEN-1", "TOKEN-2"]
    assert h.fake.calls(STABLE_TOKEN)[0].json == {
        "grant_type": "client_credential",
        "appid": h.fake.app_id,
        "secret": h.fake.app_secret,
    }

    h.fake.requests.clear()  # near its expiry (7200 s, less a 5-minute margin): renewed early
    clock.advance(timedelta(seconds=7200 - 299))
    await last_wrote_again(h)
    assert (await deliver(h, key="k4")).status == "sent"
    assert h.fake.paths() == [STABLE_TOKEN, CUSTOM_SEND]


async def test_a_token_refused_twice_is_not_retried_forever(start: Start) -> None:
    h = await start()
    await last_wrote(h, timedelta(hours=1))
    h.fake.script(CUSTOM_SEND, errcode=40001, times=2)
    row = await deliver(h)
    assert h.fake.paths() == [STABLE_TOKEN, CUSTOM_SEND, STABLE_TOKEN, CUSTOM_SEND]
    assert row.status == "pending"


# -- outbound: media and QR codes --------------------------------------------------------------


async def test_media_fetcher_downloads_through_the_configured_host(start: Start) -> None:
    h = await start()
    jpeg = b"\xff\xd8\xff\xe0" + bytes(1000)
    h.fake.media["MEDIA-1"] = (jpeg, "image/jpeg")
    fetcher = h.services.fetchers["wechat"]
    assert await fetcher.fetch("MEDIA-1") == (jpeg, "image/jpeg")
    assert h.fake.calls(MEDIA_GET)[0].query["media_id"] == "MEDIA-1"
    with pytest.raises(WeChatAPIError) as refused:
        await fetcher.fetch("expired-after-3-days")
    assert refused.value.errcode == 40007
    h.fake.media["BIG"] = (bytes(h.services.config.media.max_bytes + 1), "audio/amr")
    with pytest.raises(MediaTooLarge):
        await fetcher.fetch("BIG")


async def test_the_media_downloader_stores_a_wechat_photo(start: Start) -> None:
    h = await start()
    jpeg = b"\xff\xd8\xff\xe0photo"
    h.fake.media["Q1hM3ZcJ0b4wJk8hYzG2rVxW9eT6pLnA5sDfKj7uHyBgNmQoXcEiRt4vUw8zSa1"] = (
        jpeg,
        "image/jpeg",
    )
    await h.post(payload("subscribe_scene"))
    await h.text("1")
    await h.text("运河步道增设公厕")
    await h.text("沿线3公里没有公厕")
    assert "已收到照片" in reply_content(await (await h.post(payload("image"))).text())
    assert await h.services.media_downloader().run_once() == 1

    async with h.services.sessions() as session:
        attachment = (await session.exec(select(Attachment))).one()
    assert (attachment.status, attachment.size_bytes, attachment.channel) == (
        "stored",
        len(jpeg),
        "wechat",
    )
    assert await h.services.media_store.get(attachment.storage_key) == jpeg


async def test_qr_codes_permanent_and_temporary(start: Start) -> None:
    h = await start()
    api = h.sender().api
    permanent = await api.create_qrcode("r_V1")
    temporary = await api.create_qrcode("i_9f3a", expire_seconds=7 * 86400)
    assert (permanent.url, permanent.expire_seconds) == ("http://weixin.qq.com/q/r_V1", None)
    assert temporary.expire_seconds == 7 * 86400
    assert [r.json for r in h.fake.calls(QRCODE_CREATE)] == [
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "r_V1"}}},
        {
            "action_name": "QR_STR_SCENE",
            "expire_seconds": 7 * 86400,
            "action_info": {"scene": {"scene_str": "i_9f3a"}},
        },
    ]
    with pytest.raises(ValueError):
        await api.create_qrcode("x" * 65)


async def test_no_wechat_sender_without_an_account(start: Start) -> None:
    h = await start(app_id="")
    assert "wechat" not in h.services.senders and "wechat" not in h.services.fetchers


class SlowDialogs:
    """The real dialogs, answering only when told to (a database that has become slow)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.release = asyncio.Event()

    async def process(self, inbound: Inbound, **options: Any) -> Handled:
        await self.release.wait()
        return await self.inner.process(inbound, **options)


async def wait_for_rows(engine: AsyncEngine, model: type[SQLModel], n: int = 1) -> None:
    for _ in range(200):  # the background step finishes within a few loop turns
        if await count(engine, model) >= n:
            return
        await asyncio.sleep(0.01)


async def test_a_slow_step_is_kept_answered_in_time_and_replies_through_the_outbox(
    start: Start, engine: AsyncEngine
) -> None:
    h = await start()
    slow = SlowDialogs(h.dialogs)
    h.services.dialogs = slow  # type: ignore[assignment]
    h.client.app[WEBHOOK].reply_deadline = 0.01  # instead of 3.5 s: no test waits for real seconds
    response = await h.post(payload("text", Content="你好", MsgId="777"))
    assert response.status == 200
    assert reply_content(await response.text()) == KEPT
    async with h.services.sessions() as session:
        [kept] = (await session.exec(select(InboundReceipt))).all()
    assert (kept.status, kept.user_ref, kept.inbound["text"]) == ("queued", OPENID, "你好")
    assert await count(engine, OutboxMessage) == 0
    slow.release.set()
    await wait_for_rows(engine, OutboxMessage)
    async with h.services.sessions() as session:
        [row] = (await session.exec(select(OutboxMessage))).all()
        [done] = (await session.exec(select(InboundReceipt))).all()
    assert (row.channel, row.address, row.kind) == ("wechat", OPENID, "dialog.reply")
    assert row.body["text"] == done.replies[0]["text"] != ""
    assert row.idempotency_key == "wechat:late:777:0"
    assert (done.status, done.inbound) == ("done", None)


async def add_convener(h: Harness, clock: FixedClock) -> str:
    """A WeChat person who is V1's convener; returns the openid."""
    convener = "oConvener000000000000000000"
    async with transaction(h.services.sessions) as session:
        person = Person(display_name="召集人")
        session.add(person)
        await session.flush()
        assert person.id is not None
        room = (await session.exec(select(Room).where(Room.code == "V1"))).one()
        session.add(
            ChannelIdentity(
                person_id=person.id,
                channel="wechat",
                external_id=convener,
                last_inbound_at=clock.now(),
            )
        )
        session.add(RoleGrant(person_id=person.id, room_id=room.id, role="convener"))
    return convener


async def test_a_convener_reviews_through_a_msgmenu_inside_the_window(
    start: Start, clock: FixedClock
) -> None:
    """The card arrives as a customer-service menu; a tap comes back as text carrying
    ``bizmsgmenuid`` and the step's questions are answered by text."""
    h = await start()
    convener = await add_convener(h, clock)
    await h.post(payload("subscribe_scene"))
    for answer in ("1", "路灯不亮", "3号楼前路灯坏了", "1", "1", "1"):
        await h.text(answer)
    assert await h.services.dispatcher().run_once() == 1
    (call,) = h.fake.calls(CUSTOM_SEND)
    assert (call.json["touser"], call.json["msgtype"]) == (convener, "msgmenu")
    menu = {item["content"]: item["id"] for item in call.json["msgmenu"]["list"]}
    assert list(menu) == ["受理", "不予受理", "非议事范围", "转办", "提交上级裁定"]

    async def tap_or_type(content: str, msg_id: str, menu_id: str | None = None) -> str:
        fields = {"FromUserName": convener, "Content": content, "MsgId": msg_id}
        xml = (
            payload("text_menu_tap", bizmsgmenuid=menu_id, **fields)
            if menu_id
            else payload("text", **fields)
        )
        response = await h.post(xml)
        return xmltodict.parse(await response.text())["xml"]["Content"]

    assert await tap_or_type("不予受理", "9001", menu["不予受理"]) == "请输入「理由」："
    await tap_or_type("属物业维修范围", "9002")
    done = await tap_or_type("电话沟通", "9003")
    assert done.startswith("已办理「不予受理」：")
    async with h.services.sessions() as session:
        assert (await session.exec(select(Topic))).one().state == "declined"


async def test_a_convener_types_the_word_on_the_cards_button(
    start: Start, clock: FixedClock
) -> None:
    """Issue 11: "受理" typed under a card works like the button; a miss keeps the card."""
    h = await start()
    convener = await add_convener(h, clock)
    await h.post(payload("subscribe_scene"))
    for answer in ("1", "路灯不亮", "3号楼前路灯坏了", "1", "1", "1"):
        await h.text(answer)

    async def typed(content: str, msg_id: str) -> str:
        response = await h.post(
            payload("text", FromUserName=convener, Content=content, MsgId=msg_id)
        )
        return xmltodict.parse(await response.text())["xml"]["Content"]

    await h.post(payload("subscribe_scene", FromUserName=convener))  # in V1, as residents are
    assert "1. 路灯不亮" in await typed("待办", "9101")
    card = await typed("1", "9102")
    assert "【待初审】" in card and "1. 受理" in card
    assert (await typed("什么意思", "9103")).startswith("没有看懂")
    assert (await typed("受理", "9104")).startswith("请选择「议题类别」：")
