"""The floor: the least any WeChat handler that keeps its promises costs on this machine.

    python bench/floor.py PORT URL

Per request, like the full path but with nothing else: check the signature, parse the XML,
one transaction that advances the sender's step and stores the message's receipt (so a
retry has one effect and nothing is lost), and a passive text reply. No ORM, no dialogs.
It is not a design to adopt; it shows how much of the gap to the bare handler is the
database commit itself, and how much the project's data stack adds to it.

The URL picks the variant:

- ``postgresql://…``: raw asyncpg, the whole transaction as ONE statement (one round trip,
  autocommit) — the least a handler that commits each message can do on PostgreSQL;
- ``sqlite:///…``: raw ``sqlite3`` on the event loop's thread (no thread hop);
- ``postgresql+asyncpg://…`` / ``sqlite+aiosqlite:///…``: the same statements through the
  project's own stack (``storage.db.make_engine``: SQLAlchemy's async engine over asyncpg or
  aiosqlite), in ``engine.begin()`` as every dialog step does.
"""

import hashlib
import json
import sqlite3
import sys
import time
from pathlib import Path

import asyncpg
import xmltodict
from aiohttp import web
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.db import make_engine
from workflow.signatures import same_secret

TOKEN = "benchtoken"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS floor_state (ext TEXT PRIMARY KEY, step INTEGER, data TEXT)",
    "CREATE TABLE IF NOT EXISTS floor_receipt (key TEXT PRIMARY KEY, replies TEXT)",
)
#: Advance the step (0 for a new sender) and return it: PostgreSQL and SQLite ≥ 3.35.
ADVANCE = (
    "INSERT INTO floor_state VALUES (:ext, 0, :data) ON CONFLICT (ext) DO UPDATE "
    "SET step = floor_state.step + 1, data = excluded.data RETURNING step"
)
RECEIPT = "INSERT INTO floor_receipt VALUES (:key, :replies)"
#: Both in one statement (PostgreSQL allows DML in WITH): one round trip per message.
ONE_TRIP = (
    "WITH s AS (INSERT INTO floor_state VALUES ($1, 0, $2) ON CONFLICT (ext) DO UPDATE "
    "SET step = floor_state.step + 1, data = excluded.data RETURNING step), "
    "r AS (INSERT INTO floor_receipt VALUES ($3, $4)) SELECT step FROM s"
)
REPLIES = json.dumps(["第N步：请输入议题标题"], ensure_ascii=False)


class RawPostgres:
    async def open(self, url: str) -> None:
        self.pool = await asyncpg.create_pool(url, min_size=10, max_size=20)
        for statement in SCHEMA:
            await self.pool.execute(statement)

    async def step(self, user: str, key: str, data: str) -> int:
        return await self.pool.fetchval(ONE_TRIP, user, data, key, REPLIES)


class RawSQLite:
    async def open(self, url: str) -> None:
        self.db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            self.db.execute(statement)

    async def step(self, user: str, key: str, data: str) -> int:
        self.db.execute("BEGIN")
        (step,) = self.db.execute(ADVANCE, {"ext": user, "data": data}).fetchone()
        self.db.execute(RECEIPT, {"key": key, "replies": REPLIES})
        self.db.execute("COMMIT")
        return step


class Stack:
    """The project's engine (pool, pragmas, drivers) with the same two statements."""

    async def open(self, url: str) -> None:
        self.engine = make_engine(url)
        async with self.engine.begin() as conn:
            for statement in SCHEMA:
                await conn.execute(text(statement))
        self.advance, self.receipt = text(ADVANCE), text(RECEIPT)

    async def step(self, user: str, key: str, data: str) -> int:
        async with self.engine.begin() as conn:
            step = (await conn.execute(self.advance, {"ext": user, "data": data})).scalar_one()
            await conn.execute(self.receipt, {"key": key, "replies": REPLIES})
        return step


async def handle(request: web.Request) -> web.Response:
    query = request.query
    expected = hashlib.sha1(
        "".join(sorted([TOKEN, query["timestamp"], query["nonce"]])).encode()
    ).hexdigest()
    if not same_secret(expected, query["signature"]):
        return web.Response(status=403)
    message = xmltodict.parse(await request.read())["xml"]
    user = message["FromUserName"]
    key = message.get("MsgId") or f"{user}:{message['CreateTime']}"
    step = await request.app["db"].step(user, key, message.get("Content") or "")
    return web.Response(
        text=(
            f"<xml><ToUserName><![CDATA[{user}]]></ToUserName>"
            f"<FromUserName><![CDATA[{message['ToUserName']}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[第{step}步：请输入议题标题]]></Content></xml>"
        ),
        content_type="application/xml",
    )


async def start(app: web.Application) -> None:
    url = sys.argv[2]
    if "+" in url.split(":", 1)[0]:
        app["db"] = Stack()
    else:
        app["db"] = RawSQLite() if url.startswith("sqlite") else RawPostgres()
    await app["db"].open(url)


app = web.Application()
app.on_startup.append(start)
app.router.add_post("/wechat", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
