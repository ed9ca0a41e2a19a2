"""The ledger writer on the event loop (PostgreSQL): group commit without a thread.

The threaded writer (ledger/writer.py) passes every request's events to a thread and
back: two wake-ups per commit and, under load, the GIL handed between the loop and
the thread, which may wait a whole switch interval (5 ms) for it while the loop
runs. On PostgreSQL a commit is one statement (our recorder's append function), so
the loop sends it itself over an asynchronous connection: requests queue their items,
one task takes everything queued while the previous statement was in flight, sends it
as the next one and wakes its waiters directly.

The contract is the threaded writer's: a request is answered only after its events
are stored; an item whose client left is stored all the same; one bad item does not
sink its batch; after a lost connection, batches fail at once for `down_pause_s`
(a fast 503 beats a slow one) and the next one connects again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from psycopg import AsyncConnection, AsyncCursor

from ledger.application import Ledger
from ledger.recorders import FailFastPostgresRecorder, columns_of, has_input
from ledger.writer import LedgerUnavailable, LedgerWriter, Recordable, is_connection_error, wake_waiters

log = structlog.get_logger("ledger.writer")

Item = tuple[Recordable, "asyncio.Future[None] | None"]


class LoopWriter:
    def __init__(self, ledger: Ledger, max_batch: int = 1000, down_pause_s: float = 0.5) -> None:
        recorder = ledger.recorder
        assert isinstance(recorder, FailFastPostgresRecorder) and recorder.append_function_ready
        self.ledger = ledger
        self.max_batch = max_batch
        self.down_pause_s = down_pause_s
        self.committed_events = 0
        self.commits = 0
        self._statement = recorder.call_append_function.as_bytes(None)  # rendered once, not per commit
        pool = recorder.datastore.pool
        self._connect_args: dict[str, Any] = {
            **{k: v for k, v in pool.kwargs.items() if k != "row_factory"},
            "autocommit": True,
            "connect_timeout": max(1, round(pool.timeout)),
        }
        self._conn: AsyncConnection[Any] | None = None
        # One cursor per connection: a cursor and the statement rendered per commit cost
        # ~30 us of CPU a commit (bench ledger at one request in flight: 23.9 vs 29.2 us
        # per event, bench/README.md session 18).
        self._cursor: AsyncCursor[Any] | None = None
        self._down_until = 0.0
        self._pending: list[Item] = []
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def commit(self, item: Recordable) -> None:
        """Wait until the item's events are stored; raise LedgerUnavailable if not."""
        if not self.running:
            raise LedgerUnavailable("the ledger writer is not running")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue((item, waiter))
        await waiter

    def commit_later(self, item: Recordable) -> None:
        """Store the item's events with the next batch; nobody waits for them."""
        if not self.running:
            log.error("ledger_events_dropped", reason="the ledger writer is not running")
            return
        self._queue((item, None))

    @property
    def running(self) -> bool:
        """Started, and not stopped: what is queued now will be committed."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Commit what is queued, then close the connection."""
        self._stopping = True
        if self._wake is not None and self._task is not None:
            self._wake.set()
            await self._task
        if self._conn is not None:
            await self._conn.close()

    def _queue(self, item: Item) -> None:
        assert self._wake is not None
        self._pending.append(item)
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                await self._save(batch)
            if self._stopping:
                return

    async def _save(self, batch: list[Item]) -> None:
        if time.monotonic() < self._down_until:
            _notify(batch, "the ledger's database is unreachable")
            return
        try:
            mapper = self.ledger.mapper
            events = [event for item, _ in batch for event in item.stored_events(mapper)]
            if events:
                await self._append(columns_of(events))
        except Exception as error:
            if is_connection_error(error):
                self._down_until = time.monotonic() + self.down_pause_s
                await self._disconnect()
            elif len(batch) > 1:
                for one in batch:  # one bad item (e.g. a duplicate id) must not sink the others
                    await self._save([one])
                return
            log.error("ledger_commit_failed", error=type(error).__name__, items=len(batch))
            _notify(batch, str(error))
            return
        self.commits += 1
        self.committed_events += len(events)
        _notify(batch)

    async def _append(self, columns: tuple[list[Any], ...]) -> None:
        conn = self._conn
        if conn is None or conn.closed or has_input(conn):
            # A connection the server closed while idle (a restart, a terminated
            # backend): connect again rather than fail a batch on it.
            await self._disconnect()
            conn = self._conn = await AsyncConnection.connect(**self._connect_args)
            self._cursor = conn.cursor()
        assert self._cursor is not None
        await self._cursor.execute(self._statement, columns, prepare=True)

    async def _disconnect(self) -> None:
        conn, self._conn, self._cursor = self._conn, None, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except Exception as error:  # closing a broken connection: nothing to save
                log.warning("ledger_connection_close_failed", error=type(error).__name__)


def _notify(batch: list[Item], failure: str | None = None) -> None:
    wake_waiters([waiter for _, waiter in batch if waiter is not None], failure)


def writer_for(ledger: Ledger) -> LoopWriter | LedgerWriter:
    """The loop's own writer where a commit is one statement (our PostgreSQL recorder,
    which created the append function); the threaded writer otherwise (SQLite)."""
    recorder = ledger.recorder
    if isinstance(recorder, FailFastPostgresRecorder) and recorder.append_function_ready:
        return LoopWriter(ledger)
    return LedgerWriter(ledger)
