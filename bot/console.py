"""The console channel: talk to the same dialogs in a terminal, no platform needed.

``mashangyi chat --room CODE`` behaves like scanning that room's code; typed lines are
messages, a number picks an offered button, and follow-ups addressed to this console
person (from the outbox) are printed as they become due.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

from bot.services import Services
from dialogs.types import Inbound, Reply, room_payload
from notices.outbox import OutboxDispatcher
from storage.models import OutboxMessage

CHANNEL = "console"


def render(replies: list[Reply]) -> str:
    """Replies as terminal text: buttons become numbered lines (typing the number works)."""
    blocks = []
    for reply in replies:
        lines = [reply.text]
        lines += [f"  {i}. {b.label}" for i, b in enumerate(reply.buttons, start=1)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


class PrintingSender:
    """Prints follow-ups for the person at this terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def send(self, message: OutboxMessage) -> None:
        print(f"\n[通知] {message.body.get('text', '')}", file=self.out, flush=True)


async def chat(
    services: Services,
    room: str,
    name: str,
    *,
    read_line: Callable[[], str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    read_line = read_line or (lambda: sys.stdin.readline())
    follow_ups = OutboxDispatcher(
        services.sessions,
        {CHANNEL: PrintingSender(out)},
        services.clock,
        addresses=[name],
        worker_id=services.worker_id,
    )
    prompt = "> "
    replies = await services.dialogs.handle(
        Inbound(CHANNEL, name, "start", payload=room_payload(room), display_name=name)
    )
    while True:
        print(render(replies), file=out, flush=True)
        await follow_ups.run_once()
        print(prompt, end="", file=out, flush=True)
        line = await asyncio.to_thread(read_line)
        if not line:  # end of input
            print(file=out)
            return 0
        text = line.rstrip("\n")
        if text.strip() in {"/quit", "/exit"}:
            return 0
        replies = await services.dialogs.handle(
            Inbound(CHANNEL, name, "text", text=text, display_name=name)
        )
