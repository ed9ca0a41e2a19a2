"""One analytics projection per store, across threads, processes and hosts.

Two projections shipping into one store would each cut their own batches, and
batches with different boundaries carry different dedup tokens: rows would be
counted twice. So the projection holds a lease while it runs:

* a PostgreSQL advisory lock when the ledger is on PostgreSQL (it spans hosts,
  which is what a ClickHouse server deployment needs);
* otherwise an exclusive `flock` on a file in the data dir (the ledger is a
  SQLite file there, so every party is on this host). flock conflicts between two
  opens in one process too, so two gateways in one process are covered.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any, Protocol


class Lease(Protocol):
    def acquire(self) -> bool: ...
    def release(self) -> None: ...


class FileLease:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class PostgresLease:
    """A session-level advisory lock, held by a connection kept for that purpose."""

    def __init__(self, database_url: str, name: str) -> None:
        self.database_url = database_url
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._conn: Any = None

    def acquire(self) -> bool:
        import psycopg

        from ledger.store import connect_kwargs

        if self._conn is not None and not self._conn.closed:
            return True
        conn = psycopg.connect(**connect_kwargs(self.database_url), autocommit=True)
        if conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ending the session releases its advisory locks
            self._conn = None


def projection_lease(data_dir: Path, database_url: str | None, store_identity: str) -> Lease:
    if database_url:
        return PostgresLease(database_url, "twoapi-analytics-projection:" + store_identity)
    return FileLease(data_dir / "analytics-projection.lock")
