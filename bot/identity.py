"""Worker identities: a stable name per serving process, never shared by two live ones.

The outbox records on each row it claims (and on each reply the Telegram webhook holds)
the identity of the process holding it. A process killed mid-send leaves such rows behind;
its restarted successor takes the same identity and releases them at once
(``notices.outbox.reclaim``) instead of waiting out the lease.

An identity is ``<base>:<role>:<slot>``: ``base`` is ``outbox.worker_id`` or the host name,
``role`` what the process does (``serve``, ``worker``, ``telegram-poll``, ``chat``), ``slot``
the lowest number whose lock file no live process holds. The lock is an ``flock`` on a file
the process keeps open for its lifetime: the kernel drops it when the process dies, even
by SIGKILL, so taking an identity proves that its previous holder is gone. Several
processes of one role on one host (``serve --workers N``, two ``worker``s) get slots 0, 1, …;
after a restart they take the same slots again.

Locks are local to a host: two machines (or containers) must not share a base name. The
host name differs between them as a rule; where it does not, set ``outbox.worker_id``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

#: More processes of one role on one host than this is a misconfiguration, not a need.
MAX_SLOTS = 256


@dataclass
class WorkerIdentity:
    """A taken identity; ``release`` (or the process ending) frees its slot."""

    name: str
    _lock: IO[bytes] | None

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing the file drops the flock


def lock_dir(database_url: str) -> Path:
    """Where the identity locks of one database live: identities only mean anything per
    database, and the URL itself (it may hold a password) is not written anywhere."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mashangyi-{os.getuid()}" / digest


def take_identity(directory: Path, role: str, base: str = "") -> WorkerIdentity:
    """The identity ``<base>:<role>:<slot>`` with the lowest slot no live process holds."""
    base = base or socket.gethostname()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for slot in range(MAX_SLOTS):
        name = f"{base}:{role}:{slot}"
        lock = open(directory / _file_name(name), "ab")  # kept open: the open file is the lock
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return WorkerIdentity(name, lock)
    raise RuntimeError(f"more than {MAX_SLOTS} live {role!r} processes on {base}")


def _file_name(name: str) -> str:
    # Host names and configured ids may hold characters a file name should not.
    return hashlib.sha256(name.encode()).hexdigest()[:24] + ".lock"
