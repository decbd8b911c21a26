"""The accounting of bench/fault_drill.py: what the residents sent and were answered,
against what the database says happened and what the fake platform APIs received.

Definitions (bench/README.md has them in prose):

- a message is *acknowledged* when one of its deliveries got a 2xx within the platform's
  patience (WeChat 5 s, Telegram 30 s);
- its *effect* is its inbound receipt (``inbound_receipts``, key = MsgId, the scan event's
  key, or the update_id); the receipt also stores the replies it was given;
- each stored reply must *reach the person* exactly once: in the passive reply the person
  reads (WeChat), or as a message through the fake API to that chat;
- *lost*: acknowledged messages without a receipt, or with a reply that never arrived and
  is no longer waiting in the outbox; *doubled*: messages with a reply that arrived more
  than once, plus topics beyond one per conversation; *undrained*: replies still pending in
  the outbox when the drill stopped waiting.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from drill_fakes import Sent
from drill_traffic import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class Snapshot:
    """What the database holds, read once after draining."""

    receipts: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: (channel, address) → reply texts still pending or sending in the outbox
    waiting: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: (channel, external id) → topics submitted
    topics: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (channel, message key) of messages whose replies went into the outbox (rows keyed
    #: ``<channel>:<tag>:<message key>:<n>``; a refusal's notice does not count)
    outboxed: set[tuple[str, str]] = field(default_factory=set)
    #: (channel, message key) → texts of its outbox rows recorded sent
    sent_rows: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def waiting_rows(engine: AsyncEngine, chats: set[str]) -> int:
    """Outbox rows to these chats not yet sent (pending, or claimed and sending)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT address FROM outbox_messages WHERE status IN ('pending', 'sending')")
        )
        return sum(1 for (address,) in rows if address in chats)


async def snapshot(engine: AsyncEngine, chats: set[str]) -> Snapshot:
    shot = Snapshot()
    async with engine.connect() as conn:
        for channel, key, replies in await conn.execute(
            text("SELECT channel, key, replies FROM inbound_receipts")
        ):
            shot.receipts[(channel, key)] = [r["text"] for r in _json(replies) if r.get("text")]
        for key, status, body in await conn.execute(
            text("SELECT idempotency_key, status, body FROM outbox_messages")
        ):
            channel, tag, rest = [*key.split(":", 2), "", ""][:3]
            if tag in {"late", "reply", "overflow"} and ":" in rest:
                message = (channel, rest.rsplit(":", 1)[0])
                shot.outboxed.add(message)
                if status == "sent":
                    shot.sent_rows.setdefault(message, []).append(_json(body).get("text", ""))
        for channel, address, body in await conn.execute(
            text(
                "SELECT channel, address, body FROM outbox_messages "
                "WHERE status IN ('pending', 'sending') ORDER BY id"
            )
        ):
            if address in chats:
                shot.waiting.setdefault((channel, address), []).append(_json(body).get("text", ""))
        for channel, external_id, count in await conn.execute(
            text(
                "SELECT ci.channel, ci.external_id, count(t.id) FROM topics t "
                "JOIN channel_identities ci ON ci.person_id = t.submitter_id "
                "GROUP BY ci.channel, ci.external_id"
            )
        ):
            if external_id in chats:
                shot.topics[(channel, external_id)] = int(count)
    return shot


@dataclass
class Row:
    scenario: str
    messages: int = 0
    acknowledged: int = 0
    lost: int = 0
    lost_unprocessed: int = 0  # of lost: acknowledged but no receipt
    doubled: int = 0
    undrained: int = 0
    drain: str = "-"
    server_errors: int = 0  # deliveries answered 5xx
    out_of_order: int = 0
    max_per_second: int = 0  # most Telegram messages to one chat within one second
    healthz: str = "-"
    note: str = ""
    #: One line per lost or doubled message, for --transcript.
    details: list[str] = field(default_factory=list)
    lost_by_channel: Counter[str] = field(default_factory=Counter)


def account(
    row: Row, messages: list[Message], sent: list[Sent], shot: Snapshot, channel_of: dict[str, str]
) -> Row:
    """Fill ``row`` from the messages of one scenario and everything the fakes received."""
    chats = {m.chat for m in messages}
    sends: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        if s.chat in chats:
            sends[s.chat].append(s)
    by_chat: dict[str, list[Message]] = defaultdict(list)
    for m in sorted(messages, key=lambda m: m.seq):
        by_chat[m.chat].append(m)
    row.messages = len(messages)
    for m in messages:
        row.server_errors += sum(1 for d in m.deliveries if d.status and d.status >= 500)
    for chat, chat_messages in by_chat.items():
        lost, doubled, why = _chat(row, chat_messages, sends[chat], shot)
        row.lost += len(lost)
        row.doubled += len(doubled)
        channel = channel_of[chat]
        row.lost_by_channel[channel] += len(lost)
        for m in chat_messages:
            if m.key in lost or m.key in doubled:
                what = "lost" if m.key in lost else "doubled"
                answers = " ".join(f"{d.status}/{d.seconds:.1f}s" for d in m.deliveries)
                row.details.append(
                    f"{what} {channel} {chat} #{m.seq} [{answers}] passive={m.seen_passive[:30]!r}"
                    f" receipt={'yes' if (m.channel, m.key) in shot.receipts else 'no'}"
                    + why.get(m.key, "")
                )
        row.doubled += max(0, shot.topics.get((channel, chat), 0) - 1)
        row.out_of_order += _inversions(chat_messages, sends[chat], shot)
        if channel == "telegram":
            row.max_per_second = max(row.max_per_second, _burst(sends[chat]))
    return row


def _chat(
    row: Row, chat_messages: list[Message], sends: list[Sent], shot: Snapshot
) -> tuple[set[str], set[str], dict[str, str]]:
    """The keys of this chat's lost and doubled messages, and for a doubled one, which
    reply arrived how often (seconds after the message was due).

    A reply text can be expected by several messages of a chat (a prompt asked again), so
    API sends are matched as a pool per text: each message whose passive reply did not carry
    the text takes one send; sends left over are doubles, charged first to a message that
    was also answered passively (two replies for one message), else to the last one. A
    message handled but never acknowledged in time whose replies went into the outbox takes
    its sends first: they reach the person too, once. A reply whose own outbox row (keyed
    with the message's id) is recorded sent, and whose text reached the chat, is delivered
    without taking part in the pool.
    """
    lost: set[str] = set()
    doubled: set[str] = set()
    why: dict[str, str] = {}
    needs: dict[str, list[Message]] = defaultdict(list)  # text → messages needing a send
    passive: dict[str, list[Message]] = defaultdict(list)  # text → messages answered so
    #: Replies of messages handled though never acknowledged in time (the platform gave up
    #: on them, the service did not) that went into the outbox: sends of those are
    #: expected, neither lost nor doubles.
    unacknowledged: Counter[str] = Counter()
    delivered: Counter[str] = Counter()  # replies matched to their own sent outbox row
    for m in chat_messages:
        if not m.acknowledged:
            if (m.channel, m.key) in shot.outboxed:
                unacknowledged.update(shot.receipts.get((m.channel, m.key)) or [])
            continue
        row.acknowledged += 1
        replies = shot.receipts.get((m.channel, m.key))
        if replies is None:
            row.lost_unprocessed += 1
            lost.add(m.key)
            continue
        for reply in replies:
            if reply in m.seen_passive:
                passive[reply].append(m)
            elif any(reply in t for t in shot.sent_rows.get((m.channel, m.key), [])) and any(
                reply in s.text for s in sends
            ):
                # Its own outbox row was sent, and the text reached the chat: delivered.
                delivered[reply] += 1
            else:
                needs[reply].append(m)
    waiting = Counter(shot.waiting.get((chat_messages[0].channel, chat_messages[0].chat), []))
    for reply in set(needs) | set(passive) | set(delivered):
        arrived = sum(1 for s in sends if reply in s.text)
        pool = max(0, arrived - unacknowledged[reply] - delivered[reply])
        wanting = needs.get(reply, [])
        for m in wanting[pool:]:  # nothing arrived for these
            if waiting[reply] > 0:
                waiting[reply] -= 1
                row.undrained += 1
            else:
                lost.add(m.key)
        extra = max(0, pool - len(wanting))
        candidates = passive.get(reply, []) or wanting[-1:]
        for m in (candidates * extra)[:extra]:
            doubled.add(m.key)
            times = ", ".join(f"{s.at - m.due:.1f}" for s in sends if reply in s.text)
            shown = "passive and " if m in passive.get(reply, []) else ""
            why[m.key] = f" twice: {reply[:20]!r} ({shown}sent at {times} s)"
    return lost, doubled, why


def _inversions(chat_messages: list[Message], sends: list[Sent], shot: Snapshot) -> int:
    """Sends that arrived after a reply to a later message of the same chat."""
    position: dict[str, tuple[int, int]] = {}
    for m in chat_messages:
        for index, reply in enumerate(shot.receipts.get((m.channel, m.key), [])):
            position.setdefault(reply, (m.seq, index))
    latest, count = (-1, -1), 0
    for s in sorted(sends, key=lambda s: s.at):
        place = next((p for reply, p in position.items() if reply in s.text), None)
        if place is None:
            continue
        if place < latest:
            count += 1
        latest = max(latest, place)
    return count


def _burst(sends: list[Sent]) -> int:
    """The most messages this chat received within any one second."""
    times = sorted(s.at for s in sends)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def transcript(messages: list[Message], sent: list[Sent], shot: Snapshot) -> str:
    """One WeChat and one Telegram conversation as the drill saw it (--transcript)."""
    lines: list[str] = []
    for channel in ("wechat", "telegram"):
        chat = next((m.chat for m in messages if m.channel == channel), None)
        for m in sorted((m for m in messages if m.chat == chat), key=lambda m: m.seq):
            statuses = ",".join(str(d.status) for d in m.deliveries)
            lines.append(f"[{channel} {m.chat} #{m.seq} key={m.key} answers={statuses}]")
            lines.append(f"  passive: {m.seen_passive[:80]!r}")
            for reply in shot.receipts.get((m.channel, m.key), ["<no receipt>"]):
                lines.append(f"  receipt: {reply[:80]!r}")
        lines += [f"  sent: {s.text[:80]!r}" for s in sent if s.chat == chat]
    return "\n".join(lines)


def capacity_of(messages: list[Message], window: float = 2.0) -> float:
    buckets: dict[int, list[float]] = {}
    for m in messages:
        first = min(m.deliveries, key=lambda d: d.sent_at, default=None)
        answered = first is not None and m.answered(first)
        latency = (first.sent_at + first.seconds - m.due) if answered and first else math.inf
        buckets.setdefault(int(m.due // window), []).append(latency)
    best = 0.0
    for _, latencies in sorted(buckets.items()):
        if len(latencies) < 10:
            continue
        latencies.sort()
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        unanswered = sum(1 for latency in latencies if not math.isfinite(latency))
        rate = len(latencies) / window
        print(f"ramp {rate:5.1f} msg/s: p95 {p95:.2f} s, {unanswered} unanswered", file=sys.stderr)
        if p95 <= 1.0 and not unanswered:
            best = max(best, rate)
    return best


def table(rows: list[Row], database: str) -> str:
    head = (
        "| scenario | messages | acknowledged | lost (unprocessed) | doubled | undrained "
        "| time to drain | 5xx | out of order | max msgs/s/chat | healthz ≤ 1 s | note |"
    )
    lines = [f"{database}:", "", head, "|---|" + "---:|" * 10 + "---|"]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.messages} | {r.acknowledged} | {r.lost} ({r.lost_unprocessed})"
            f" | {r.doubled} | {r.undrained} | {r.drain} | {r.server_errors} | {r.out_of_order}"
            f" | {r.max_per_second} | {r.healthz} | {_note(r)} |"
        )
    return "\n".join(lines)


def _note(row: Row) -> str:
    split = row.lost_by_channel
    lost = f"lost: WeChat {split['wechat']}, Telegram {split['telegram']}" if row.lost else ""
    return "; ".join(part for part in (row.note, lost) if part)
