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


async def probe(config_text: str, tmp_path: Path, path: str = "/readyz") -> tuple[int, dict]:
    config = tmp_path / "c.toml"
    config.write_text(config_text, "utf-8")
    services = build_services(
        load_config(config, env={}), clock=FixedClock(datetime(2026, 11, 23, 9, tzinfo=CHINA))
    )
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        response = await client.get(path)
        return response.status, await response.json()
    finally:
        await client.close()
        await services.close()


@pytest.fixture
async def db_config(database_url: str) -> AsyncIterator[str]:
    yield f'[database]\nurl = "{database_url}"\n'


async def test_readyz_warns_when_holiday_data_runs_out(db_config: str, tmp_path: Path) -> None:
    status, body = await probe(db_config, tmp_path)
    assert status == 200
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["calendar"].startswith("No official holiday data for 2027")
    # 2027 is counted with the statutory days alone, and the check says so.
    assert "PROVISIONAL: statutory holidays computed from the law" in body["checks"]["calendar"]


async def test_readyz_is_quiet_with_a_table_for_next_year(db_config: str, tmp_path: Path) -> None:
    (tmp_path / "2027.toml").write_text(TABLE_2027, "utf-8")
    status, body = await probe(db_config + '[calendar]\nholiday_tables = ["2027.toml"]\n', tmp_path)
    assert (status, body["checks"]["calendar"]) == (200, "ok")


async def test_readyz_reports_a_database_it_cannot_reach(tmp_path: Path) -> None:
    unreachable = '[database]\nurl = "postgresql+asyncpg://nobody@127.0.0.1:1/none"\n'
    status, body = await probe(unreachable, tmp_path)
    assert status == 503
    assert body["status"] == "error"
    assert body["checks"]["database"].startswith("error:")
    # The process itself is alive: a liveness probe must not restart it for the database.
    assert await probe(unreachable, tmp_path, "/healthz") == (200, {"status": "ok"})


async def test_a_topic_page_exists_only_once_the_topic_is_public(
    database_url: str,
    engine,
    clock: FixedClock,
    tmp_path: Path,
) -> None:
    """Issue 11: before publication (and when declined, redirected, withdrawn) a topic's
    number answers exactly as a number never given; sequential numbers list nothing."""
    from storage.db import make_session_factory
    from tests.world import ROUTES, build_world
    from workflow.lifecycle import PUBLIC_STATES, State

    world = await build_world(make_session_factory(engine), clock)
    topics = {state: await world.at(state) for state in State}
    public = await world.walk(
        await world.open("V1", title="<script>x</script>路灯", contact_phone="13812345678"),
        ROUTES[State.OUTCOME_REVIEW],
    )
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    services = build_services(load_config(path, env={}), clock=clock)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()

    async def get(number: str) -> tuple[int, str]:
        response = await client.get(f"/t/{number}")
        return response.status, await response.text()

    try:
        pages = {state: await get(topic.number) for state, topic in topics.items()}
        page = (await get(public.number))[1]
        missing = await get("NO-2026-000001")
    finally:
        await client.close()
        await services.close()
    assert missing[0] == 404
    assert {s for s, (status, _) in pages.items() if status == 200} == PUBLIC_STATES
    for state, answer in pages.items():
        if state not in PUBLIC_STATES:
            assert answer == missing, state  # no way to tell it from an unknown number
    assert "&lt;script&gt;x&lt;/script&gt;路灯" in page and "<script>x" not in page
    assert "协商成果审核中" in page and "本环节应于3月9日前完成" in page
    assert "沿线3公里没有公厕" in page  # published: the description is public
    assert "13812345678" not in page


async def test_a_published_topic_page_shows_the_agreed_outcome(
    database_url: str, engine, clock: FixedClock, tmp_path: Path
) -> None:
    """The outcome block, rendered only once results are published, under the pages'
    strict environment (a name missing from it would be a 500, not an empty line)."""
    from storage.db import make_session_factory
    from tests.world import build_world
    from workflow.lifecycle import State

    world = await build_world(make_session_factory(engine), clock)
    topics = [await world.at(State.RESULTS_PUBLISHED), await world.at(State.IMPLEMENTED)]
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    services = build_services(load_config(path, env={}), clock=clock)
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        for topic in topics:
            response = await client.get(f"/t/{topic.number}")
            page = await response.text()
            assert response.status == 200, page
            assert "落实单位：镇城管科" in page and "落实措施：立项施工" in page
            assert "完成时限：2026-06-30" in page
    finally:
        await client.close()
        await services.close()
