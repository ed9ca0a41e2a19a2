"""The batched ledger writer (group commit) on a thread: the gateway's on SQLite, and
for callers without an event loop (tools, tests, benchmarks). On PostgreSQL the
gateway commits from its event loop instead (ledger/loop_writer.py).

Requests hand their traces to one writer thread and wait on a future. The thread
takes everything queued while the previous transaction was committing and saves it
in one transaction, so under load many requests share each commit and the ledger is
not the throughput ceiling, while at low load a request waits for one commit only.
A request is answered only after its future resolves: that is the durability
contract (a complete response implies its events are stored).

The thread maps the batch's domain events to stored events with the application's
mapper and hands them to the recorder in one call: what `Application.save` does for
events (no snapshots, no aggregates to cache, no followers to notify), without
`collect_events`' runtime-checkable Protocol `isinstance` on every event (~18 us an
event here, more than the mapping itself). On PostgreSQL the recorder's
`append_events` also skips returning the notification ids nobody reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Protocol

import structlog
from eventsourcing.persistence import Mapper, StoredEvent

from ledger.application import Ledger

log = structlog.get_logger("ledger.writer")


class Recordable(Protocol):
    def stored_events(self, mapper: Mapper) -> list[StoredEvent]: ...


class LedgerUnavailable(Exception):
    """The events could not be committed; the request must not be served."""


_STOP = object()

# Who waits for an item: a thread-safe future (`submit`), or an event loop's future
# (`commit`) with its loop.
Waiter = Future[None] | tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class LedgerWriter:
    def __init__(self, ledger: Ledger, max_batch: int = 1000, down_pause_s: float = 0.5) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
        # After a lost connection, batches in the next `down_pause_s` fail at once
        # rather than each waiting out a connect timeout: a fast 503 beats a slow one.
        self.down_pause_s = down_pause_s
        self._down_until = 0.0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.committed_events = 0
        self.commits = 0
        # Our PostgreSQL recorder appends without returning notification ids.
        recorder = ledger.recorder
        self._append = getattr(recorder, "append_events", None) or recorder.insert_events
        # Nothing is queued behind the stop mark: the thread would never take it.
        self._closed = False
        self._closing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def submit(self, item: Recordable) -> Future[None]:
        """Queue the item; the future resolves once its events are stored (or fails
        with LedgerUnavailable, at once if the writer is closed)."""
        future: Future[None] = Future()
        if not self._put((item, future)):
            _resolve(future, LedgerUnavailable("the ledger writer is closed"))
        return future

    async def commit(self, item: Recordable) -> None:
        """Wait until the item's events are stored; raise LedgerUnavailable if not.
        The waiter is the loop's own future, woken with the rest of its batch in one
        call from the writer's thread (a thread-safe future per request, wrapped for
        the loop and woken one by one, was ~4% of the CPU at one request in flight)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if not self._put((item, (loop, waiter))):
            raise LedgerUnavailable("the ledger writer is closed")
        await waiter

    def commit_later(self, item: Recordable) -> None:
        """Store the item's events with the next batch; nobody waits for them."""
        if not self._put((item, Future())):
            log.error("ledger_events_dropped", reason="the ledger writer is closed")

    async def start(self) -> None:
        """The thread runs from construction; here for the loop writer's interface."""

    async def stop(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread; later items are refused."""
        with self._closing:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join(timeout)

    def _put(self, entry: tuple[Recordable, Waiter]) -> bool:
        with self._closing:
            if self._closed:
                return False
            self._queue.put(entry)
            return True

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._save(batch)
            if stop:
                return

    def _save(self, batch: list[tuple[Recordable, Waiter]]) -> None:
        # Items whose waiter has gone (a client that disconnected) are saved all the
        # same: what was served must be recorded; only the notification is skipped.
        if time.monotonic() < self._down_until:
            _notify([waiter for _, waiter in batch], "the ledger's database is unreachable")
            return
        try:
            mapper = self.ledger.mapper
            events = [event for item, _ in batch for event in item.stored_events(mapper)]
            self._append(events)
        except Exception as error:
            if len(batch) > 1 and not is_connection_error(error):
                # One bad item (e.g. a duplicate id) must not sink the others.
                for one in batch:
                    self._save_one(*one)
                return
            if is_connection_error(error):
                self._down_until = time.monotonic() + self.down_pause_s
            log.error("ledger_commit_failed", error=type(error).__name__, items=len(batch))
            _notify([waiter for _, waiter in batch], str(error))
            return
        self.commits += 1
        self.committed_events += len(events)
        _notify([waiter for _, waiter in batch])

    def _save_one(self, item: Recordable, waiter: Waiter) -> None:
        try:
            events = item.stored_events(self.ledger.mapper)
            self._append(events)
        except Exception as error:
            log.error("ledger_commit_failed", error=type(error).__name__, items=1)
            _notify([waiter], str(error))
        else:
            self.committed_events += len(events)
            _notify([waiter])


def _notify(waiters: list[Waiter], failure: str | None = None) -> None:
    """Resolve the waiters of one batch: thread-safe futures here, each loop's futures
    in one call on that loop. `failure`: why the events were not stored."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for waiter in waiters:
        if isinstance(waiter, Future):
            _resolve(waiter, None if failure is None else LedgerUnavailable(failure))
        else:
            by_loop.setdefault(waiter[0], []).append(waiter[1])
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(wake_waiters, futures, failure)


def wake_waiters(futures: list[asyncio.Future[None]], failure: str | None = None) -> None:
    """On their loop: resolve each waiter still waiting, or fail it with `failure`."""
    for future in futures:
        if future.done():
            continue  # the waiter was cancelled (its client went away)
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(LedgerUnavailable(failure))


def _resolve(future: Future[None], error: Exception | None = None) -> None:
    if not future.set_running_or_notify_cancel():
        return  # the waiter was cancelled
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def is_connection_error(error: Exception) -> bool:
    name = type(error).__name__
    return name in {"OperationalError", "InterfaceError", "PoolTimeout", "OperationalErrorSQLite"}
