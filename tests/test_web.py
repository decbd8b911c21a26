"""The web app's own routes (the platform webhooks come with the front-door issue)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.config import load_config
from bot.services import build_services
from bot.web import create_app
from workflow.clock import CHINA, FixedClock

TABLE_2027 = """year = 2027
source = "test table"
holidays = [2027-01-01, 2027-02-06, 2027-02-07, 2027-02-08, 2027-02-09, 2027-02-10,
            2027-02-11, 2027-02-12, 2027-02-13]
workdays = [2027-02-20]
"""


async def healthz(config_text: str, tmp_path: Path) -> tuple[int, dict]:
    path = tmp_path / "c.toml"
    path.write_text(config_text, "utf-8")
    services = build_services(
        load_config(path, env={}), clock=FixedClock(datetime(2026, 11, 23, 9, tzinfo=CHINA))
    )
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        response = await client.get("/healthz")
        return response.status, await response.json()
    finally:
        await client.close()
        await services.close()


@pytest.fixture
async def db_config(database_url: str) -> AsyncIterator[str]:
    yield f'[database]\nurl = "{database_url}"\n'


async def test_healthz_warns_when_holiday_data_runs_out(db_config: str, tmp_path: Path) -> None:
    status, body = await healthz(db_config, tmp_path)
    assert status == 200
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["calendar"].startswith("No official holiday data for 2027")


async def test_healthz_is_quiet_with_a_table_for_next_year(db_config: str, tmp_path: Path) -> None:
    (tmp_path / "2027.toml").write_text(TABLE_2027, "utf-8")
    status, body = await healthz(
        db_config + '[calendar]\nholiday_tables = ["2027.toml"]\n', tmp_path
    )
    assert (status, body["checks"]["calendar"]) == (200, "ok")


async def test_healthz_reports_a_database_it_cannot_reach(tmp_path: Path) -> None:
    status, body = await healthz(
        '[database]\nurl = "postgresql+asyncpg://nobody@127.0.0.1:1/none"\n', tmp_path
    )
    assert status == 503
    assert body["status"] == "error"
    assert body["checks"]["database"].startswith("error:")


async def test_public_topic_page_shows_public_facts_only(
    database_url: str,
    engine,
    clock: FixedClock,
    tmp_path: Path,
) -> None:
    from storage.db import make_session_factory
    from tests.world import build_world

    world = await build_world(make_session_factory(engine), clock)
    topic = await world.open("V1", title="<script>x</script>路灯", contact_phone="13812345678")
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    services = build_services(load_config(path, env={}), clock=clock)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        page = await (await client.get(f"/t/{topic.number}")).text()
        missing = await client.get("/t/NO-2026-000001")
    finally:
        await client.close()
        await services.close()
    assert "&lt;script&gt;x&lt;/script&gt;路灯" in page and "<script>x" not in page
    assert "待初审" in page and "本环节应于 2026-03-09 前完成" in page
    assert "13812345678" not in page and "沿线3公里没有公厕" not in page  # not yet published
    assert missing.status == 404
