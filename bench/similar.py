"""Similar topics: recall@3, wrong suggestions and time per look-up, for the bigram matcher
that was (bench/similar_bigram.py) and the one in workflow/similar.py, in one process.

    .venv/bin/python bench/similar.py            # about 30 s
    .venv/bin/python bench/similar.py --misses   # and every query the new matcher got wrong
    .venv/bin/python bench/similar.py --database postgresql+asyncpg://postgres@127.0.0.1/bench_similar

The evaluation set is bench/similar_eval.toml; what is counted: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import similar_bigram  # noqa: E402

from storage.db import make_engine, make_session_factory, transaction  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Topic  # noqa: E402
from workflow import similar  # noqa: E402
from workflow.duplicates import POOL, similar_open_topics  # noqa: E402
from workflow.rooms import get_room, import_rooms, parse_rooms_csv  # noqa: E402

Matcher = Callable[..., list[Any]]
MATCHERS: dict[str, Matcher] = {
    "bigram (before)": similar_bigram.most_similar,
    "words + synonyms (now)": similar.most_similar,
}
DISTRICT = 10_000
PLACES = [f"{name}{n}号楼" for name in ("幸福小区", "东湖社区", "阳光花园") for n in range(1, 21)]
PLACES += [
    f"{name}{group}" for name in ("王庄村", "李家村", "河西村") for group in "一二三四五六七八"
]


def evaluate(
    matcher: Matcher, data: dict[str, Any], split: str, title_only: bool
) -> tuple[int, int, int, int, int]:
    """(found, queries with a match, wrong shown, queries, new matters shown anything)."""
    ids = [t["id"] for t in data["topic"]]
    pool = [(i, t["title"], t["background"]) for i, t in enumerate(data["topic"])]
    found = with_match = wrong = asked = new_shown = 0
    for query in data["query"]:
        if split != "all" and query["split"] != split:
            continue
        asked += 1
        background = "" if title_only else query["background"]
        shown = [ids[m.key] for m in matcher(query["title"], background, pool)]
        same = set(query["same"])
        if same:
            with_match += 1
            found += bool(same & set(shown))
        else:
            new_shown += bool(shown)
        wrong += sum(key not in same for key in shown)
    return found, with_match, wrong, asked, new_shown


def district(data: dict[str, Any], size: int) -> list[tuple[int, str, str]]:
    """``size`` open topics: the set's topics again and again at other places, so that
    no two texts are the same (a profile cache cannot pretend there are fewer)."""
    rng = random.Random(12)
    topics = data["topic"]
    pool = []
    for key in range(size):
        topic = topics[key % len(topics)]
        place = rng.choice(PLACES)
        pool.append((key, f"{place}{topic['title']}", f"{topic['background']}（{key}）"))
    return pool


def timed(matcher: Matcher, queries: Sequence[dict[str, Any]], pool: list[Any]) -> list[float]:
    times = []
    for query in queries:
        start = time.perf_counter()
        matcher(query["title"], "", pool)
        times.append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", action="store_true")
    parser.add_argument("--size", type=int, default=DISTRICT)
    parser.add_argument(
        "--database", help="where to time the whole look-up (default: a new SQLite file)"
    )
    args = parser.parse_args(argv)
    data = tomllib.loads((HERE / "similar_eval.toml").read_text("utf-8"))
    start = time.perf_counter()
    similar.profile("路灯")
    print(
        f"new matcher's vocabulary loaded in {time.perf_counter() - start:.2f} s (once a process)"
    )
    print(
        f"{len(data['topic'])} open topics, {len(data['query'])} queries "
        f"({sum(bool(q['same']) for q in data['query'])} with a match)\n"
    )
    print("| matcher | compares | split | recall@3 | wrong | wrong/query | new matters shown any |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, matcher in MATCHERS.items():
        for title_only in (True, False):
            for split in ("dev", "held", "all"):
                found, with_match, wrong, asked, new_shown = evaluate(
                    matcher, data, split, title_only
                )
                news = asked - with_match
                print(
                    f"| {name} | {'title' if title_only else 'title+background'} | {split} "
                    f"| {found}/{with_match} ({found / with_match:.0%}) | {wrong} "
                    f"| {wrong / asked:.2f} | {new_shown}/{news} |"
                )
    if args.misses:
        print_misses(data)

    pool = district(data, args.size)
    queries = data["query"]
    print(f"\ntime per look-up (title only), {len(pool):,} open topics, {len(queries)} look-ups:")
    print("| matcher | first look-up | median | p95 |")
    print("|---|---:|---:|---:|")
    similar._cached_profile.cache_clear()
    for name, matcher in MATCHERS.items():
        gc.collect()
        first = timed(matcher, queries[:1], pool)[0]
        rest = sorted(timed(matcher, queries, pool))
        p95 = rest[int(0.95 * (len(rest) - 1))]
        print(
            f"| {name} | {first * 1000:,.0f} ms | {statistics.median(rest) * 1000:,.1f} ms "
            f"| {p95 * 1000:,.1f} ms |"
        )
    similar._cached_profile.cache_clear()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database or f"sqlite+aiosqlite:///{scratch}/similar.db"
        asyncio.run(through_database(url, pool, queries))
    return 0


ROOMS = "code,name,level,parent_code\nD,区,district,\nT,镇,town,D\n" + "".join(
    f"V{n},{n}村,village,T\n" for n in range(1, 9)
)
#: The open states the district's topics are spread over (publicized ones get 点赞 too).
STATES = ("submitted", "awaiting_approval", "approved", "publicized", "researching")


async def through_database(url: str, pool: list[Any], queries: Sequence[dict[str, Any]]) -> None:
    """The resident's look-up as 提议题 makes it (workflow/duplicates.py): the room V1 and
    its nearby rooms (seven villages and their town) hold the ``pool``'s topics between
    them; each look-up reads them and matches the title."""
    if url.startswith("postgresql"):
        import asyncpg

        plain = url.replace("+asyncpg", "")
        admin = await asyncpg.connect(plain.rsplit("/", 1)[0] + "/postgres")
        name = plain.rsplit("/", 1)[1]
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
    await upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    now = datetime(2026, 3, 2, 2, tzinfo=UTC)
    async with transaction(sessions) as session:
        await import_rooms(session, parse_rooms_csv(ROOMS.encode()), now)
        rooms = [await get_room(session, code) for code in ["T", *(f"V{n}" for n in range(1, 9))]]
        ids = [room.id for room in rooms if room is not None and room.id is not None]
        session.add_all(
            Topic(
                number=f"D-2026-{key:06d}",
                room_id=ids[key % len(ids)],
                source="public",
                title=title,
                background=background,
                state=STATES[key % len(STATES)],
                step_started_at=now,
                created_at=now,
                updated_at=now,
            )
            for key, title, background in pool
        )
    v1 = ids[1]
    times = []
    for query in queries:
        async with sessions() as session:
            start = time.perf_counter()
            await similar_open_topics(session, v1, query["title"])
            times.append(time.perf_counter() - start)
    await engine.dispose()
    first, rest = times[0], sorted(times[1:])
    print(
        f"\nthe whole look-up (workflow/duplicates.py) on {url.split(':')[0]}, {len(pool):,} open "
        f"topics in the room and the rooms nearby (the newest {POOL:,} compared), "
        f"{len(queries)} look-ups: first "
        f"{first * 1000:,.0f} ms, median {statistics.median(rest) * 1000:,.1f} ms, "
        f"p95 {rest[int(0.95 * (len(rest) - 1))] * 1000:,.1f} ms"
    )


def print_misses(data: dict[str, Any]) -> None:
    ids = [t["id"] for t in data["topic"]]
    titles = {t["id"]: t["title"] for t in data["topic"]}
    pool = [(i, t["title"], t["background"]) for i, t in enumerate(data["topic"])]
    print("\nqueries the new matcher (title only) missed or answered with another matter:")
    for query in data["query"]:
        found = similar.most_similar(query["title"], "", pool)
        shown = [(ids[m.key], m.score) for m in found]
        same = set(query["same"])
        if any(key not in same for key, _ in shown) or (same and not same & {k for k, _ in shown}):
            got = ", ".join(f"{titles[key]} {score:.2f}" for key, score in shown) or "nothing"
            want = "、".join(titles[key] for key in query["same"]) or "(a new matter)"
            print(f"  [{query['split']}] {query['title']} → {got}; same matter: {want}")


if __name__ == "__main__":
    raise SystemExit(main())
