"""Residents for bench/fault_drill.py: signed WeChat callbacks and Telegram updates that
walk through raising a topic, each delivered two or three times as the platforms do.

Open loop throughout: conversations start at a fixed rate and each message is sent at its
scheduled time whatever happened to the one before, so a slow or dead service cannot slow
the offered load down (a closed loop would hide overload by waiting for it).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import random
import re
import time
from dataclasses import dataclass, field

import aiohttp

WECHAT_TOKEN = "drilltoken"
TG_SECRET = "drill-secret_0123456789"
ROOMS = ["DH-JY-HB", "DH-JY-QS", "DH-GX-CY", "XS-LT-YJ", "XS-SQ-BS"]
#: WeChat stops waiting after 5 s and retries, twice at most (three deliveries).
WECHAT_WAIT = 5.0
#: Telegram waits longer; a webhook that does not answer is retried later.
TELEGRAM_WAIT = 30.0
RETRY_GAP = 5.0
#: Messages per conversation: the scan or /start, then the six steps.
PER_CONVERSATION = 7
_CONTENT = re.compile(r"<Content><!\[CDATA\[(.*)\]\]></Content>", re.S)
_ids = itertools.count(int(time.time()) * 1000)


@dataclass
class Delivery:
    sent_at: float  # monotonic, when the request went out
    status: int | None = None  # None: no answer (refused, reset, timed out)
    seconds: float = 0.0
    passive: str = ""  # WeChat: the passive reply's text ("" for "success")


@dataclass
class Message:
    scenario: str
    channel: str  # "wechat" | "telegram"
    chat: str  # openid or chat id (as text)
    key: str  # the service's receipt key: MsgId, scan event key, update_id
    seq: int  # position in its conversation
    due: float  # scheduled time of the first delivery (monotonic)
    body: bytes
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def wait(self) -> float:
        return WECHAT_WAIT if self.channel == "wechat" else TELEGRAM_WAIT

    def answered(self, d: Delivery) -> bool:
        """A 2xx within the platform's patience: the platform counts it as delivered."""
        return d.status is not None and 200 <= d.status < 300 and d.seconds <= self.wait

    @property
    def acknowledged(self) -> bool:
        return any(self.answered(d) for d in self.deliveries)

    @property
    def seen_passive(self) -> str:
        """The passive reply the person reads. WeChat retries only when an earlier answer
        did not arrive, so with forced retries the last in-time answer is the one shown."""
        answered = [d for d in self.deliveries if self.answered(d)]
        return answered[-1].passive if answered else ""


def constant_starts(rate: float, seconds: float) -> list[float]:
    """Conversation start offsets for ``rate`` messages per second over ``seconds``."""
    count = max(2, round(rate * seconds / PER_CONVERSATION))
    return [n * seconds / count for n in range(count)]


def ramp_starts(low: float, high: float, seconds: float) -> list[float]:
    """Start offsets for a rate growing exponentially from ``low`` to ``high`` msg/s: the
    n-th start is where the integral of rate/PER_CONVERSATION reaches n."""
    growth = math.log(high / low) / seconds
    out, n = [], 0
    while True:
        at = math.log(1 + n * PER_CONVERSATION * growth / low) / growth
        if at >= seconds:
            return out
        out.append(at)
        n += 1


def _conversation(n: int) -> list[str]:
    # Titles and descriptions are unique per conversation, so every reply text in one chat
    # is distinct (the summary repeats them) and a send can be told from a double.
    return [
        "提议题",
        f"第{n}号楼门前路灯不亮",
        f"第{n}号楼门前的路灯坏了两周，晚上出行不便，希望尽快修好。",
        "下一步",
        "跳过",
        "1",
    ]


def wechat_query() -> str:
    timestamp, nonce = str(int(time.time())), str(random.randrange(10**9))
    parts = sorted([WECHAT_TOKEN, timestamp, nonce])
    signature = hashlib.sha1("".join(parts).encode()).hexdigest()
    return f"signature={signature}&timestamp={timestamp}&nonce={nonce}"


def _xml(**elements: str | int) -> bytes:
    parts = (
        f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}><![CDATA[{v}]]></{k}>"
        for k, v in elements.items()
    )
    return f"<xml>{''.join(parts)}</xml>".encode()


def wechat_messages(scenario: str, n: int, room: str, start: float, gap: float) -> list[Message]:
    openid = f"o-drill-{scenario}-{n}"
    created = int(time.time())
    head: dict[str, str | int] = {
        "ToUserName": "gh_drill",
        "FromUserName": openid,
        "CreateTime": created,
    }
    scan = _xml(**head, MsgType="event", Event="SCAN", EventKey=f"r_{room}", Ticket="t")
    # Events carry no MsgId: the service keys a scan by sender, CreateTime and event.
    out = [Message(scenario, "wechat", openid, f"{openid}:{created}:SCAN", 0, start, scan)]
    for seq, text in enumerate(_conversation(n), 1):
        msg_id = next(_ids)
        xml = _xml(**head, MsgType="text", Content=text, MsgId=msg_id)
        out.append(Message(scenario, "wechat", openid, str(msg_id), seq, start + seq * gap, xml))
    return out


def telegram_messages(
    scenario: str, n: int, chat_id: int, room: str, start: float, gap: float
) -> list[Message]:
    out = []
    user = {"id": chat_id, "is_bot": False, "first_name": f"居民{n}"}
    chat = {"id": chat_id, "type": "private", "first_name": f"居民{n}"}
    for seq, text in enumerate([f"/start r_{room}", *_conversation(n)]):
        update_id = next(_ids)
        message = {"message_id": seq + 1, "from": user, "chat": chat, "date": int(time.time())}
        message["text"] = text
        if seq == 0:
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": 6}]
        body = json.dumps({"update_id": update_id, "message": message})
        out.append(
            Message(
                scenario,
                "telegram",
                str(chat_id),
                str(update_id),
                seq,
                start + seq * gap,
                body.encode(),
            )
        )
    return out


@dataclass
class Traffic:
    """Sends messages at their scheduled times, 2–3 deliveries each; bounded by ``until``."""

    port: int
    rng: random.Random
    messages: list[Message] = field(default_factory=list)
    _http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Traffic:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self._http = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def run(
        self, scenario: str, starts: list[float], gap: float, first_chat: int
    ) -> list[Message]:
        """One conversation per offset in ``starts`` (seconds from now), its messages
        ``gap`` seconds apart, WeChat and Telegram in turn; return when all are done."""
        start = time.monotonic() + 0.5
        batch: list[Message] = []
        for n, offset in enumerate(starts):
            room, begin, number = ROOMS[n % len(ROOMS)], start + offset, first_chat + n
            if n % 2:
                batch += telegram_messages(scenario, number, number, room, begin, gap)
            else:
                batch += wechat_messages(scenario, number, room, begin, gap)
        self.messages += batch
        await asyncio.gather(*(self._message(m) for m in batch))
        return batch

    async def _message(self, message: Message) -> None:
        copies = self.rng.choice((2, 3))
        # Together (a slow answer and WeChat's retry racing) or WeChat's spacing.
        spaced = self.rng.random() < 0.5
        offsets = [i * RETRY_GAP if spaced else self.rng.uniform(0, 0.05) for i in range(copies)]
        await asyncio.gather(*(self._deliver(message, message.due + o) for o in offsets))

    async def _deliver(self, message: Message, when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.monotonic()))
        delivery = Delivery(time.monotonic())
        message.deliveries.append(delivery)
        assert self._http is not None
        if message.channel == "wechat":
            url = f"http://127.0.0.1:{self.port}/wechat?{wechat_query()}"
            headers = {"Content-Type": "text/xml"}
        else:
            url = f"http://127.0.0.1:{self.port}/telegram"
            headers = {
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": TG_SECRET,
            }
        # A little past the platform's patience, to tell "late" from "never".
        timeout = aiohttp.ClientTimeout(total=message.wait + 1.0)
        try:
            async with self._http.post(
                url, data=message.body, headers=headers, timeout=timeout
            ) as response:
                text = await response.text()
                delivery.status = response.status
        except (aiohttp.ClientError, TimeoutError):
            delivery.seconds = time.monotonic() - delivery.sent_at
            return
        delivery.seconds = time.monotonic() - delivery.sent_at
        if message.channel == "wechat" and (found := _CONTENT.search(text)):
            delivery.passive = found.group(1).replace("]]]]><![CDATA[>", "]]>")
