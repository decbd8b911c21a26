"""The floor: the least any WeChat handler that keeps its promises costs on this machine.

    python bench/floor.py PORT sqlite:///path.db | postgresql://user@host/db

Per request, like the full path but with nothing else: check the signature, parse the XML,
read the sender's state, then one transaction writing the new state and the message's
receipt (so a retry has one effect and nothing is lost), and a passive text reply. Raw
asyncpg / sqlite3 with hand-written SQL, no ORM, no dialogs. It is not a design to adopt;
it shows how much of the gap to the bare handler is the database commit itself.
"""

import hashlib
import hmac
import json
import re
import sqlite3
import sys
import time

import asyncpg
import xmltodict
from aiohttp import web

TOKEN = "benchtoken"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS floor_state (ext TEXT PRIMARY KEY, step INTEGER, data TEXT)",
    "CREATE TABLE IF NOT EXISTS floor_receipt (key TEXT PRIMARY KEY, replies TEXT)",
)
SAVE = (
    "INSERT INTO floor_state VALUES ($1, $2, $3) "
    "ON CONFLICT (ext) DO UPDATE SET step = excluded.step, data = excluded.data"
)
RECEIPT = "INSERT INTO floor_receipt VALUES ($1, $2)"


def qmark(sql: str) -> str:
    """asyncpg's ``$1`` placeholders as sqlite3's ``?``."""
    return re.sub(r"\$\d+", "?", sql)


class Postgres:
    async def open(self, url: str) -> None:
        self.pool = await asyncpg.create_pool(url, min_size=10, max_size=20)
        for statement in SCHEMA:
            await self.pool.execute(statement)

    async def step(self, user: str, key: str, text: str) -> str:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT step FROM floor_state WHERE ext = $1", user)
            reply = f"第{(row['step'] + 1) if row else 0}步：请输入议题标题"
            async with conn.transaction():
                await conn.execute(SAVE, user, (row["step"] + 1) if row else 0, text)
                await conn.execute(RECEIPT, key, json.dumps([reply]))
        return reply


class SQLite:
    async def open(self, url: str) -> None:
        self.db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            self.db.execute(statement)

    async def step(self, user: str, key: str, text: str) -> str:
        row = self.db.execute("SELECT step FROM floor_state WHERE ext = ?", (user,)).fetchone()
        reply = f"第{(row[0] + 1) if row else 0}步：请输入议题标题"
        self.db.execute("BEGIN")
        self.db.execute(qmark(SAVE), (user, (row[0] + 1) if row else 0, text))
        self.db.execute(qmark(RECEIPT), (key, json.dumps([reply])))
        self.db.execute("COMMIT")
        return reply


async def handle(request: web.Request) -> web.Response:
    query = request.query
    expected = hashlib.sha1(
        "".join(sorted([TOKEN, query["timestamp"], query["nonce"]])).encode()
    ).hexdigest()
    if not hmac.compare_digest(expected, query["signature"]):
        return web.Response(status=403)
    message = xmltodict.parse(await request.read())["xml"]
    user = message["FromUserName"]
    key = message.get("MsgId") or f"{user}:{message['CreateTime']}"
    reply = await request.app["db"].step(user, key, message.get("Content") or "")
    return web.Response(
        text=(
            f"<xml><ToUserName><![CDATA[{user}]]></ToUserName>"
            f"<FromUserName><![CDATA[{message['ToUserName']}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{reply}]]></Content></xml>"
        ),
        content_type="application/xml",
    )


async def start(app: web.Application) -> None:
    url = sys.argv[2]
    app["db"] = SQLite() if url.startswith("sqlite") else Postgres()
    await app["db"].open(url)


app = web.Application()
app.on_startup.append(start)
app.router.add_post("/wechat", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
