"""The console channel: talk to the same dialogs in a terminal, no platform needed.

``mashangyi chat --room CODE`` behaves like scanning that room's code; typed lines are
messages, a number or a label picks an offered button, and follow-ups addressed to this
console person (from the outbox) are printed as they become due, also while it waits for
a line. Only this process delivers the console channel (``serve`` and ``worker`` have no
sender for it), so a reviewer's decision in one terminal reaches the chat in another.

Ctrl-C and Ctrl-D end the chat at once: lines are read in a daemon thread straight from
the file descriptor, so neither the interpreter's exit nor asyncio's waits for it.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bot.notice_files import NoticeStore
from bot.services import Services
from dialogs.router import chosen
from dialogs.types import Inbound, Reply, room_payload
from notices.message import OutboundMessage
from notices.outbox import OutboxDispatcher
from storage.models import OutboxMessage
from workflow.texts import Catalogue

CHANNEL = "console"
SAY = Catalogue(Path(__file__).with_name("zh_CN.toml"))


def render(replies: list[Reply]) -> str:
    """Replies as terminal text: buttons become numbered lines (typing the number works)."""
    blocks = []
    for reply in replies:
        lines = [reply.text]
        lines += [f"  {i}. {b.label}" for i, b in enumerate(reply.buttons, start=1)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


class PrintingSender:
    """Prints follow-ups for the person at this terminal, with their buttons; a message
    with a file (a printable notice) as its caption and where the file is on disk."""

    def __init__(self, out: TextIO, files: NoticeStore | None = None) -> None:
        self.out = out
        self.files = files
        #: The buttons of the last follow-up printed while they are the last ones shown
        #: (``[label, payload]``); the chat empties it when a reply offers its own.
        self.offered: list[list[str]] = []

    async def send(self, row: OutboxMessage, message: OutboundMessage) -> None:
        text = message.text
        if message.file is not None and self.files is not None:
            path = await self.files.path(message.file)
            text = SAY.text("console", "file", caption=text, path=str(path))
        reply = Reply(SAY.text("console", "notice", text=text), message.buttons)
        print(f"\n{render([reply])}", file=self.out, flush=True)
        if message.buttons:
            self.offered = [[b.label, b.payload] for b in message.buttons]


class StdinLines:
    """Lines of standard input read from its file descriptor, not through ``sys.stdin``:
    a daemon thread blocked in ``sys.stdin.readline`` holds its lock, and the interpreter's
    exit then stops on it."""

    def __init__(self, fd: int = 0, encoding: str | None = None) -> None:
        self.fd = fd
        self.decoder = codecs.getincrementaldecoder(encoding or sys.stdin.encoding or "utf-8")(
            "replace"
        )
        self.buffer = ""

    def __call__(self) -> str:
        while "\n" not in self.buffer:
            chunk = os.read(self.fd, 4096)
            self.buffer += self.decoder.decode(chunk, final=not chunk)
            if not chunk:  # end of input: what is left, then ""
                line, self.buffer = self.buffer, ""
                return line
        line, _, self.buffer = self.buffer.partition("\n")
        return line + "\n"


async def _read_in_daemon(read_line: Callable[[], str]) -> str:
    """``read_line()`` in a daemon thread: a Ctrl-C cancels the wait, and nothing waits for
    the thread (the executor's threads are joined at exit, i.e. until Enter)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def settle(line: str | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(line or "")

    def run() -> None:
        try:
            line, error = read_line(), None
        except Exception as exc:  # handed to the chat
            line, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, line, error)
        except RuntimeError:  # the chat has ended meanwhile
            pass

    threading.Thread(target=run, name="console-input", daemon=True).start()
    return await future


async def chat(
    services: Services,
    room: str,
    name: str,
    *,
    read_line: Callable[[], str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    read_line = read_line or StdinLines()
    printer = PrintingSender(out, services.notices)
    follow_ups = OutboxDispatcher(
        services.sessions,
        {CHANNEL: printer},
        services.clock,
        addresses=[name],
        worker_id=services.worker_id,
    )
    poll = services.config.outbox.poll_seconds
    prompt = "> "
    replies = await services.dialogs.handle(
        Inbound(CHANNEL, name, "start", payload=room_payload(room), display_name=name)
    )
    while True:
        print(render(replies), file=out, flush=True)
        if any(r.buttons for r in replies):
            printer.offered = []
        await follow_ups.run_once()
        print(prompt, end="", file=out, flush=True)
        reading = asyncio.ensure_future(_read_in_daemon(read_line))
        # Follow-ups keep arriving while the person thinks.
        while not (await asyncio.wait({reading}, timeout=poll))[0]:
            if await follow_ups.run_once():
                print(prompt, end="", file=out, flush=True)
        line = reading.result()
        if not line:  # end of input
            print(file=out)
            return 0
        text = line.rstrip("\n")
        if text.strip() in {"/quit", "/exit"}:
            return 0
        payload = chosen(text, printer.offered)
        if payload is not None:  # a follow-up's button, typed by number or label
            printer.offered = []
            inbound = Inbound(CHANNEL, name, "button", payload=payload, display_name=name)
        else:
            inbound = Inbound(CHANNEL, name, "text", text=text, display_name=name)
        replies = await services.dialogs.handle(inbound)
