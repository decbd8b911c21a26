"""A local, append-only spool: where a message is kept when the database cannot take it.

WeChat is told "received" only for a message that is durably kept. When the database is
down or stalled, the message is appended here (one JSON line, fsynced) instead, and moved
into the database once it answers again (dialogs/inbox.py). Every serving process writes;
the process running the background loops imports.

Writers and the importer share files without losing a line:
- a writer opens ``<dir>/<pid>.jsonl`` for appending, takes an exclusive ``flock``, checks
  that the name still leads to the file it opened (else the importer took that file, and
  it opens the name again, making a new one), appends, fsyncs and unlocks;
- the importer renames a file to a new ``<time>.<name>.taken`` (a writer never opens that
  name; a new one each time, since a taken file a failed import left must not be
  replaced by the next one taken from the same writer), takes the lock (waiting for a
  writer that opened the file before the rename), reads it, and deletes it only once
  every line is in the database.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

TAKEN = ".taken"


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def append(self, record: dict[str, Any]) -> None:
        """Keep ``record`` on disk (durable when this returns)."""
        line = json.dumps(record, ensure_ascii=False).encode() + b"\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{os.getpid()}.jsonl"
        while True:
            with path.open("ab") as file, _locked(file):
                try:
                    same = os.path.samestat(os.fstat(file.fileno()), path.stat())
                except FileNotFoundError:
                    same = False
                if not same:  # the importer took it between our open and our lock
                    continue
                file.write(line)
                file.flush()
                os.fsync(file.fileno())
                return

    def take(self) -> list[Path]:
        """Claim every spooled file for importing (also ones a failed import left)."""
        if not self.directory.is_dir():
            return []
        for path in self.directory.glob("*.jsonl"):
            try:
                path.rename(path.with_name(f"{time.time_ns():020d}.{path.name}{TAKEN}"))
            except FileNotFoundError:  # another importer was quicker
                continue
        return sorted(self.directory.glob(f"*{TAKEN}"))

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """The records of a taken file; a torn last line (a crash mid-append) is skipped."""
        with path.open("rb") as file, _locked(file):
            lines = file.read().splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except ValueError:
                log.warning("spool: %s line %d is not a record; skipped", path.name, number)
        return records

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)


@contextmanager
def _locked(file: BinaryIO) -> Iterator[None]:
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
