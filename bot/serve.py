"""``mashangyi serve``: the web service in one process, or in several sharing one port.

One Python process uses one CPU core; a machine with several serves more messages with one
process per core. ``--workers N`` starts N processes that each bind the port with
``SO_REUSEPORT`` (the kernel spreads connections over them). Only the first runs the
background loops (outbox, media downloads, reminder sweeps); the others only answer
requests. Several processes need PostgreSQL: one person's messages are serialized by a row
lock there, and SQLite takes one writer at a time; and Redis (``redis.url``) for a flood
limit counted once for all of them (dialogs/throttle.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import secrets
import signal
import tempfile
from pathlib import Path

from aiohttp import web

from bot.config import Config, ConfigError, load_config
from bot.logs import configure as configure_logging
from bot.services import build_review_links, build_services
from bot.web import create_app
from storage.db import is_sqlite
from workflow.clock import Clock

log = logging.getLogger("mashangyi")

#: A worker that does not stop this long after being asked is killed.
STOP_SECONDS = 15.0


async def serve(
    config: Config,
    host: str,
    port: int,
    *,
    background: bool = True,
    reuse_port: bool = False,
    parent_gone: int | None = None,
    clock: Clock | None = None,
    announce: bool = True,
) -> None:
    """Serve until SIGTERM or Ctrl+C; ``background``: also run the outbox, media and sweeps.

    ``parent_gone``: a file descriptor that becomes readable when the process that started
    this one exits; then this one stops too, rather than live on unsupervised. ``clock``:
    the services' clock (None: the system clock). ``announce``: print the address (one
    process of several does).
    """
    services = build_services(config, clock)
    if background and (warning := services.calendar_warning()):
        log.warning("%s", warning)
    # Before the first request: the webhook holds its replies under this identity, and
    # taking it releases what a killed predecessor held (also in processes that run no
    # delivery loop: the one that does then sends those rows at once).
    await services.take_worker_id("serve")
    # Off by default: safe-mode WeChat callbacks carry the sender's openid in the query
    # string, and the proxy in front usually logs requests already.
    access_log = logging.getLogger("aiohttp.access") if config.server.access_log else None
    runner = web.AppRunner(create_app(services, run_outbox=background), access_log=access_log)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        if announce:  # once, also with several workers
            print(f"mashangyi is serving on http://{host}:{port} (Ctrl+C stops)", flush=True)
        freeze_start_up_heap()
        await stop_event(signal.SIGTERM, watch=parent_gone).wait()
    finally:
        await runner.cleanup()
        await services.close()


async def serve_many(
    config: Config, host: str, port: int, workers: int, *, background: bool = True
) -> int:
    """Run ``workers`` serving processes until a signal (0) or until one of them dies (1);
    ``background``: the first of them also runs the outbox, media downloads and sweeps."""
    if is_sqlite(config.database_url):
        raise ConfigError(
            "serve --workers: several processes need PostgreSQL "
            "(SQLite takes one writer at a time); use one process or database.url = postgresql…"
        )
    if not config.server.secret_key.get_secret_value():
        build_review_links(config)  # refuses with WeChat configured: links must outlive us
        # Every worker must sign and check review links with the same key.
        os.environ["MASHANGYI_SERVER_SECRET_KEY"] = secrets.token_hex(32)
        log.warning(
            "server.secret_key is not set: the workers share a random key, and every "
            "review link dies when the service restarts"
        )
    if not config.redis.url:
        log.warning(
            "redis.url is not set: each of the %d processes counts the flood limit on its own",
            workers,
        )
    # Each process counts its own requests; prometheus-client's multiprocess mode keeps the
    # counts in files of one directory, which /metrics adds up in whichever worker is asked.
    # Set before the workers start (they import prometheus-client afresh: spawn).
    metrics_dir = tempfile.TemporaryDirectory(prefix="mashangyi-metrics-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir.name)
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(
            target=_worker,
            args=(config.source, host, port, background and index == 0, index == 0),
            daemon=False,
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    stopped = asyncio.create_task(stop_event(signal.SIGTERM, signal.SIGINT).wait())
    while not stopped.done() and all(p.is_alive() for p in processes):
        await asyncio.wait({stopped}, timeout=0.5)
    died = not stopped.done()
    if died:
        stopped.cancel()
        log.error("a serving process exited; stopping the others")
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: each finishes its requests and closes cleanly
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
    metrics_dir.cleanup()
    return 1 if died else 0


def _worker(source: Path | None, host: str, port: int, background: bool, first: bool) -> None:
    config = load_config(source)
    configure_logging(config.server.log_format)
    parent = multiprocessing.parent_process()
    # A parent killed outright (SIGKILL, OOM) cannot stop its workers: they watch it, or
    # they would go on answering, delivering and sweeping with nobody supervising them.
    gone = parent.sentinel if parent is not None else None
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C reaches the whole process group
        asyncio.run(
            serve(
                config,
                host,
                port,
                background=background,
                reuse_port=True,
                parent_gone=gone,
                announce=first,
            )
        )


def freeze_start_up_heap() -> None:
    """Exempt everything allocated so far (modules, classes, the app, the services) from
    the cyclic garbage collector's full collections.

    These objects live as long as the process, yet every full collection walked all of
    them again: a heavy reminder sweep (tens of thousands of rows) triggers several, which
    cost a sixth to a quarter of it (bench/README.md). Called once the process is set up;
    anything allocated later is collected as usual.
    """
    gc.collect()
    gc.freeze()


def stop_event(*signals: signal.Signals, watch: int | None = None) -> asyncio.Event:
    """An event set when one of ``signals`` arrives, or the file descriptor ``watch`` becomes
    readable; handlers on the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in signals:
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(signum, stop.set)
    if watch is not None:
        loop.add_reader(watch, stop.set)
    return stop
