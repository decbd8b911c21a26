"""What monitoring asks the service: ``/healthz`` (the process answers), ``/readyz`` (it can
do its work: database, Redis, schema, calendar) and ``/metrics`` (Prometheus), and the
middleware that gives every request an id and times it.

``/healthz`` checks nothing beyond the process itself, so a database outage does not get
every worker restarted by a liveness probe; ``/readyz`` is the one a load balancer asks.
A calendar running out of official data is reported by ``/readyz`` but does not make the
service unready: due dates fall back to the statutory days, and taking every worker out
of service would be worse than a due date a day off.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from bot.logs import REQUEST_ID
from bot.services import Services
from storage.migrate import head_revision, schema_revision
from storage.models import OutboxMessage
from workflow.overdue import overdue_query

#: A check answers within this, whatever the database or Redis does (a stalled connection).
CHECK_SECONDS = 0.8
#: A request id a proxy may hand us (X-Request-Id); anything else gets a new one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

WEBHOOK_SECONDS = Histogram(
    "mashangyi_request_seconds",
    "Time to answer a request, by route kind (the webhooks per channel, web pages)",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 4, 5, 10),
)
_ROUTES = {"wechat": "wechat", "telegram": "telegram"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request id on the request's log lines and its answer, and its time measured."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
    token = REQUEST_ID.set(request_id)
    route = _ROUTES.get(request.path.strip("/").split("/", 1)[0], "web")
    start = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    finally:
        WEBHOOK_SECONDS.labels(route).observe(time.perf_counter() - start)
        REQUEST_ID.reset(token)
    response.headers["X-Request-Id"] = request_id
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(services: Services) -> web.Response:
    checks = {
        "database": await _checked(_ping(services.priority_engine or services.engine)),
        "migrations": await _checked(_schema_current(services.engine)),
        "redis": await _checked(services.redis.ping()) if services.redis is not None else "off",
        "calendar": services.calendar_warning() or "ok",
    }
    ready = all(v in ("ok", "off") for k, v in checks.items() if k != "calendar")
    return web.json_response(
        {"status": "ok" if ready else "error", "checks": checks}, status=200 if ready else 503
    )


async def _checked(check: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(check, CHECK_SECONDS)
    except TimeoutError:
        return "error: no answer within a second"
    except _NotCurrent as exc:
        return f"error: {exc}"
    except Exception as exc:  # report, don't crash: this is what monitoring polls
        return f"error: {type(exc).__name__}"
    return "ok"


class _NotCurrent(Exception):
    pass


async def _ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _schema_current(engine: AsyncEngine) -> None:
    current, head = await schema_revision(engine), _HEAD
    if current != head:
        raise _NotCurrent(f"schema at {current}, this code needs {head} (mashangyi db upgrade)")


_HEAD = head_revision()


async def metrics(services: Services) -> web.Response:
    """This process's metrics (every worker's, with ``serve --workers``) and the
    database's gauges, read at the scrape so that any worker gives the same answer."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    families = await _database_gauges(services)
    body = generate_latest(registry) + generate_latest(_Snapshot(families))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class _Snapshot(CollectorRegistry):
    """Gauges computed for one scrape, exposed with the same text format."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        super().__init__(auto_describe=False)
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families


async def _database_gauges(services: Services) -> list[GaugeMetricFamily]:
    depth = GaugeMetricFamily(
        "mashangyi_outbox_depth", "Outbox messages not yet sent", labels=["channel"]
    )
    oldest = GaugeMetricFamily(
        "mashangyi_outbox_oldest_seconds",
        "Age of the oldest message not yet sent",
        labels=["channel"],
    )
    dead = GaugeMetricFamily(
        "mashangyi_outbox_dead", "Outbox messages given up on", labels=["channel"]
    )
    overdue = GaugeMetricFamily(
        "mashangyi_overdue_topics", "Topics past their five-working-day review window"
    )
    now = services.clock.now()
    c = OutboxMessage
    async with services.sessions() as session:
        unsent = await session.exec(
            select(c.channel, func.count(), func.min(c.created_at))
            .where(col(c.status).in_(("pending", "sending")))
            .group_by(col(c.channel))
        )
        for channel, count, first in unsent:
            depth.add_metric([channel], count)
            oldest.add_metric([channel], max(0.0, (now - _aware(first)).total_seconds()))
        given_up = await session.exec(
            select(c.channel, func.count()).where(c.status == "dead").group_by(col(c.channel))
        )
        for channel, count in given_up:
            dead.add_metric([channel], count)
        late = overdue_query(now).subquery()
        overdue.add_metric([], (await session.exec(select(func.count()).select_from(late))).one())
    return [depth, oldest, dead, overdue]


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone (stored in UTC).
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def setup(app: web.Application, services: Services) -> None:
    app.middlewares.append(observe)
    app.router.add_get("/healthz", healthz)

    async def ready(_request: web.Request) -> web.Response:
        return await readyz(services)

    async def scrape(_request: web.Request) -> web.Response:
        return await metrics(services)

    app.router.add_get("/readyz", ready)
    app.router.add_get("/metrics", scrape)
