"""The local spool (storage/spool.py): nothing appended is lost while files are taken."""

from __future__ import annotations

import asyncio
from pathlib import Path

from storage.spool import Spool


async def test_records_appended_while_files_are_taken_all_arrive_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    seen: list[int] = []

    async def write(start: int) -> None:
        for n in range(start, start + 50):
            await spool.append({"n": n})

    async def take_until(total: int) -> None:
        for _ in range(2000):
            for path in spool.take():
                seen.extend(record["n"] for record in spool.read(path))
                spool.done(path)
            if len(seen) >= total:
                return
            await asyncio.sleep(0.001)

    await asyncio.gather(write(0), write(1000), take_until(100))
    for path in spool.take():  # whatever came after the last round
        seen.extend(record["n"] for record in spool.read(path))
        spool.done(path)
    assert sorted(seen) == [*range(50), *range(1000, 1050)]


def test_a_torn_last_line_is_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (tmp_path / "1.jsonl").write_bytes(b'{"n": 1}\n{"n": 2}\n{"n"')
    [path] = spool.take()
    assert spool.read(path) == [{"n": 1}, {"n": 2}]
    assert spool.take() == [path]  # not done yet: still there for the next round
