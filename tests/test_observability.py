"""What operators see (issue 14, item 4): /readyz's checks, /metrics in Prometheus's text
format with the outbox and overdue gauges read from the database, request ids, and log
lines (plain or JSON) that never carry an openid or a phone number in clear."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.config import load_config
from bot.logs import REQUEST_ID, configure, mask, pseudonym
from bot.services import Services, build_services
from bot.web import create_app
from notices.message import OutboundMessage
from notices.outbox import enqueue
from storage.db import transaction
from storage.migrate import upgrade
from workflow.clock import CHINA, FixedClock

NOW = datetime(2026, 11, 23, 9, tzinfo=CHINA)
OPENID = "oAbCdEfGhIjKlMnOpQrStUvWxYz1"  # 28 characters, as WeChat's


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[TestClient, Services]]:
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    services = build_services(load_config(path, env={}), clock=FixedClock(NOW))
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    yield client, services
    await client.close()
    await services.close()


async def _ready(config_text: str, tmp_path: Path) -> tuple[int, dict]:
    path = tmp_path / "r.toml"
    path.write_text(config_text, "utf-8")
    services = build_services(load_config(path, env={}), clock=FixedClock(NOW))
    client = TestClient(TestServer(create_app(services, run_outbox=False)))
    await client.start_server()
    try:
        response = await client.get("/readyz")
        return response.status, await response.json()
    finally:
        await client.close()
        await services.close()


async def test_readyz_names_a_schema_behind_the_code(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await upgrade(url, "0014")
    status, body = await _ready(f'[database]\nurl = "{url}"\n', tmp_path)
    assert status == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"].startswith("error: schema at 0014, this code needs")
    assert "mashangyi db upgrade" in body["checks"]["migrations"]
    await upgrade(url)
    status, body = await _ready(f'[database]\nurl = "{url}"\n', tmp_path)
    assert (status, body["checks"]["migrations"], body["checks"]["redis"]) == (200, "ok", "off")


async def test_readyz_checks_redis_when_configured(database_url: str, tmp_path: Path) -> None:
    db = f'[database]\nurl = "{database_url}"\n'
    status, body = await _ready(db + '[redis]\nurl = "redis://127.0.0.1:1/0"\n', tmp_path)
    assert status == 503
    assert body["checks"]["redis"].startswith("error:")
    if redis_url := os.environ.get("MASHANGYI_TEST_REDIS_URL"):
        status, body = await _ready(db + f'[redis]\nurl = "{redis_url}"\n', tmp_path)
        assert (status, body["checks"]["redis"]) == (200, "ok")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_read_the_outbox_and_the_overdue_topics_from_the_database(
    client: tuple[TestClient, Services],
) -> None:
    http, services = client
    body = OutboundMessage(text="你好")
    async with transaction(services.sessions) as session:
        for n, minutes in enumerate((90, 10)):  # the older one sets the age
            await enqueue(
                session,
                key=f"m{n}",
                channel="telegram",
                address=str(n),
                kind="x",
                message=body,
                now=NOW - timedelta(minutes=minutes),
            )
        await enqueue(
            session, key="w", channel="wechat", address=OPENID, kind="x", message=body, now=NOW
        )
    from sqlalchemy import update

    from storage.models import OutboxMessage

    async with transaction(services.sessions) as session:
        await session.exec(  # type: ignore[call-overload]
            update(OutboxMessage).where(OutboxMessage.idempotency_key == "w").values(status="dead")
        )
    response = await http.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = _samples(await response.text())
    assert samples[("mashangyi_outbox_depth", (("channel", "telegram"),))] == 2
    assert samples[("mashangyi_outbox_oldest_seconds", (("channel", "telegram"),))] == 90 * 60
    assert samples[("mashangyi_outbox_dead", (("channel", "wechat"),))] == 1
    assert ("mashangyi_outbox_depth", (("channel", "wechat"),)) not in samples
    assert samples[("mashangyi_overdue_topics", ())] == 0


async def test_every_request_is_timed_and_carries_a_request_id(
    client: tuple[TestClient, Services],
) -> None:
    http, _ = client
    before = _samples(await (await http.get("/metrics")).text())
    key = ("mashangyi_request_seconds_count", (("route", "web"),))
    given = await http.get("/healthz", headers={"X-Request-Id": "edge-42"})
    assert given.headers["X-Request-Id"] == "edge-42"
    # Not an id a proxy would send (too long, a newline): a new one instead of the input.
    forged = await http.get("/t/999999", headers={"X-Request-Id": "x" * 65})
    assert forged.status == 404
    assert len(forged.headers["X-Request-Id"]) == 16 and forged.headers["X-Request-Id"] != "x" * 65
    after = _samples(await (await http.get("/metrics")).text())
    assert after[key] - before.get(key, 0) == 3  # the first scrape, /healthz and the 404


@pytest.fixture
def log_to() -> Iterator[io.StringIO]:
    """A buffer for the service's log lines; the test run's own logging restored after."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        yield io.StringIO()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)


def test_masking_keeps_lines_followable_without_the_identifiers() -> None:
    assert mask("电话 13912345678，另一个１３９１２３４５６７８") == (
        "电话 139****5678，另一个１３９１２３４５６７８"  # full-width digits: not a match here
    )
    assert mask("order 2013912345678999") == "order 2013912345678999"  # inside a longer number
    assert (
        mask(f"wechat:event:{OPENID}:1700000000") == f"wechat:event:{pseudonym(OPENID)}:1700000000"
    )
    assert pseudonym(OPENID) == pseudonym(OPENID) != pseudonym(OPENID[:-1] + "2")


def test_json_lines_carry_the_request_id_and_no_identifier(log_to: io.StringIO) -> None:
    configure("json", stream=log_to)
    token = REQUEST_ID.set("req-7")
    try:
        logging.getLogger("mashangyi.test").warning(
            "reply to %s failed (%s)", OPENID, "13912345678"
        )
        try:
            raise ValueError(f"cannot reach {OPENID}")
        except ValueError:
            logging.getLogger("mashangyi.test").exception("step failed")
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("mashangyi.test").info("outside a request")
    lines = [json.loads(line) for line in log_to.getvalue().splitlines()]
    assert [(line["level"], line["logger"], line["request_id"]) for line in lines] == [
        ("WARNING", "mashangyi.test", "req-7"),
        ("ERROR", "mashangyi.test", "req-7"),
        ("INFO", "mashangyi.test", ""),
    ]
    assert lines[0]["message"] == f"reply to {pseudonym(OPENID)} failed (139****5678)"
    assert "ValueError: cannot reach p:" in lines[1]["exc_info"]
    assert OPENID not in log_to.getvalue() and "13912345678" not in log_to.getvalue()


def test_text_lines_show_the_request_id(log_to: io.StringIO) -> None:
    configure("text", stream=log_to)
    token = REQUEST_ID.set("req-8")
    try:
        logging.getLogger("mashangyi.test").warning("chat %s", pseudonym(42))
    finally:
        REQUEST_ID.reset(token)
    line = log_to.getvalue().strip()
    assert line.endswith(f"WARNING mashangyi.test [req-8]: chat {pseudonym(42)}")


def test_a_log_format_the_service_does_not_know_is_named(tmp_path: Path) -> None:
    from bot.config import ConfigError

    path = tmp_path / "c.toml"
    path.write_text('[server]\nlog_format = "xml"\n', "utf-8")
    with pytest.raises(ConfigError, match=r"server\.log_format"):
        load_config(path, env={})


async def test_deliveries_are_counted_by_result(client: tuple[TestClient, Services]) -> None:
    from notices.outbox import PermanentFailure
    from storage.models import OutboxMessage

    class Console:
        async def send(self, row: OutboxMessage, message: OutboundMessage) -> None:
            if row.address == "gone":
                raise PermanentFailure("no such chat")

    http, services = client
    # A channel of this test's own: the counters are the process's, shared by every test.
    services.senders["probe"] = Console()
    before = _samples(await (await http.get("/metrics")).text())
    async with transaction(services.sessions) as session:
        for n, address in enumerate(("a", "b", "gone")):
            await enqueue(
                session,
                key=f"c{n}",
                channel="probe",
                address=address,
                kind="x",
                message=OutboundMessage(text="你好"),
                now=NOW,
            )
    await services.dispatcher(channels=["probe"]).drain()
    after = _samples(await (await http.get("/metrics")).text())

    def added(result: str) -> float:
        key = ("mashangyi_deliveries_total", (("channel", "probe"), ("result", result)))
        return after.get(key, 0) - before.get(key, 0)

    assert (added("sent"), added("dead")) == (2, 1)
