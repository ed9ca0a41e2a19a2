"""Reading the stored ledger fast and as it is stored.

Audit reads every event, so it skips the library's domain-event objects: each stored
row is kept as it is (for tamper evidence, which hashes the stored bytes) and its
state is decoded with orjson only for the topics a reader asks for.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from queue import Full, Queue
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic, retry
from psycopg import InterfaceError, OperationalError
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from ledger.events import Request

PAGE = 5000
WINDOW = 20_000  # positions per query when scanning some topics (PostgreSQL)


@dataclass(slots=True)
class Row:
    """One stored event: its notification id (position), aggregate, version, topic and
    stored state bytes."""

    position: int
    originator_id: Any  # UUID
    version: int
    topic: str
    state: bytes

    def fields(self) -> dict[str, Any]:
        return orjson.loads(self.state)

    @property
    def event_id(self) -> str:
        """As ledger.accounts.event_id names it: `<aggregate id>/<version>`."""
        return f"{_id_text(self.originator_id)}/{self.version}"

    def digest(self) -> bytes:
        """The row's SHA-256: position, aggregate, version, topic and state bytes."""
        head = f"{self.position}|{_id_text(self.originator_id)}|{self.version}|{self.topic}|".encode()
        return hashlib.sha256(head + self.state).digest()


_last_id: tuple[int, str] = (-1, "")


def _id_text(originator_id: Any) -> str:
    """str(originator_id), remembered for the last id: a request's events are stored
    one after another, and a UUID's str() costs more than the rest of a digest's head."""
    global _last_id
    if not isinstance(originator_id, UUID):
        return str(originator_id)
    last = _last_id  # one tuple, read and replaced whole: safe across threads
    if last[0] == originator_id.int:
        return last[1]
    text = _uuid_text(originator_id.hex)
    _last_id = (originator_id.int, text)
    return text


def _uuid_text(h: str) -> str:
    """str(UUID) from its hex, at half the cost of UUID.__str__."""
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def topics(*event_classes: type) -> tuple[str, ...]:
    return tuple(get_topic(cls) for cls in event_classes)


def rows(ledger: Any, after: int = 0, stop: int | None = None, only: Iterable[str] = (),
         page: int = PAGE) -> Iterator[Row]:
    """Stored events with position > `after` (and <= `stop`), in order; `only`: topics."""
    for found in pages(ledger, after, stop, only, page):
        for position, originator_id, version, topic, state in found:
            yield Row(position, originator_id, version, topic, state)


StoredTuple = tuple[int, Any, int, str, bytes]  # position, aggregate id, version, topic, state


def pages(ledger: Any, after: int = 0, stop: int | None = None, only: Iterable[str] = (), page: int = PAGE,
          text_ids: bool = False) -> Iterator[list[StoredTuple]]:
    """The rows of `rows()` as plain tuples, a page at a time: for a reader whose work
    per row is small enough that a `Row` per row shows (re-pricing). With `text_ids`
    the aggregate id comes as its text (PostgreSQL formats it, which is cheaper than
    a `UUID` per row, and a string hashes and prints for free)."""
    wanted = tuple(only)
    recorder = ledger.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        # On PostgreSQL the next page is read (in a thread) while the caller works
        # through the current one.
        yield from _read_ahead(_postgres_pages(recorder, after, stop, wanted, page, text_ids))
        return
    start = after
    while True:
        batch = recorder.select_notifications(start, page, stop=stop, topics=wanted, inclusive_of_start=False)
        yield [(n.id, str(n.originator_id) if text_ids else n.originator_id, n.originator_version, n.topic,
                bytes(n.state)) for n in batch]
        if len(batch) < page:
            return
        start = batch[-1].id


def _postgres_pages(recorder: PostgresApplicationRecorder, start: int, stop: int | None, topics: tuple[str, ...],
                    page: int, text_ids: bool) -> Iterator[list[StoredTuple]]:
    """All topics: `page` rows at a time, in position order (the position index).
    Some topics: every matching row of WINDOW positions at a time. Asked instead for
    the first `page` matching rows after a position, PostgreSQL reads and sorts every
    matching row of the range it picks (or, with statistics that lag a bulk load, of
    the rest of the table) for each page."""
    if not topics:
        while True:
            found = _select_rows(recorder, start, page, stop, topics, text_ids)
            yield found
            if len(found) < page:
                return
            start = found[-1][0]
    head = 0
    while True:
        upper = start + WINDOW if stop is None else min(stop, start + WINDOW)
        yield _select_rows(recorder, start, None, upper, topics, text_ids)
        if upper == stop:
            return
        if upper >= head:  # past the last position seen: is there more now?
            head = recorder.max_notification_id() or 0
            if upper >= head:
                return
        start = upper


def _read_ahead(pages: Iterator[list[Any]], depth: int = 2) -> Iterator[list[Any]]:
    """`pages`, produced by a thread up to `depth` ahead once the caller has asked for a
    second page: the database and the driver work on the next page while the caller
    handles this one. A caller that wants one page (a seal) reads no page it drops."""
    first = next(pages, None)
    if first is None:
        return
    yield first
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stopping = threading.Event()

    def produce() -> None:
        try:
            for item in pages:
                if not _put(queue, (True, item), stopping):
                    return
        except BaseException as error:  # handed to the caller, raised there
            _put(queue, (False, error), stopping)
            return
        _put(queue, (False, None), stopping)

    thread = threading.Thread(target=produce, name="ledger-scan", daemon=True)
    thread.start()
    try:
        while True:
            more, item = queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stopping.set()
        thread.join()


def _put(queue: Queue[tuple[bool, Any]], item: tuple[bool, Any], stopping: threading.Event) -> bool:
    while not stopping.is_set():
        try:
            queue.put(item, timeout=0.1)
            return True
        except Full:
            continue
    return False


@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as the library's select_notifications
def _select_rows(recorder: PostgresApplicationRecorder, start: int, limit: int | None, stop: int | None,
                 topics: tuple[str, ...], text_ids: bool = False) -> list[StoredTuple]:
    """`select_notifications(start, limit, stop, topics, inclusive_of_start=False)` without
    building a dict and a Notification per row: tuples, fetched in binary (bytea as
    bytes rather than hex text)."""
    key = (recorder.datastore.schema, recorder.events_table_name, stop is not None, bool(topics), limit is not None,
           text_ids)
    statement = _SELECT.get(key)
    if statement is None:
        statement = SQL("SELECT notification_id, {id}, originator_version, topic, state FROM "
                        "{schema}.{table} WHERE notification_id > %s").format(
            id=SQL("originator_id::text" if text_ids else "originator_id"),
            schema=Identifier(key[0]), table=Identifier(key[1]))
        if stop is not None:
            statement += SQL(" AND notification_id <= %s")
        if topics:
            statement += SQL(" AND topic = ANY(%s)")
        statement += SQL(" ORDER BY notification_id")
        if limit is not None:
            statement += SQL(" LIMIT %s")
        _SELECT[key] = statement
    params: list[Any] = [start]
    if stop is not None:
        params.append(stop)
    if topics:
        params.append(list(topics))
    if limit is not None:
        params.append(limit)
    with recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row, binary=True) as curs:
        curs.execute(statement, params, prepare=True)
        return curs.fetchall()


_SELECT: dict[tuple[str, str, bool, bool, bool, bool], Any] = {}


def timestamp(fields: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(fields["timestamp"])


class Owners:
    """Whose request a usage event belongs to: (tenant, key id) by request id (a `UUID`,
    or its text when rows are read with text ids).

    A request's events are committed together, so its `Received` is read just before
    its usage: about the last `capacity` requests are remembered (in two generations:
    when the young one is full it becomes the old one, and the old one is dropped),
    and an older one is looked up by reading its first event, which keeps long scans
    in constant memory.
    """

    def __init__(self, ledger: Any, capacity: int = 100_000) -> None:
        self.ledger = ledger
        self.capacity = capacity
        self._young: dict[Any, tuple[str, str] | None] = {}
        self._old: dict[Any, tuple[str, str] | None] = {}

    def received(self, request_id: Any, fields: dict[str, Any]) -> None:
        self._remember(request_id, (fields["tenant"], fields["key_id"]))

    def of(self, request_id: Any) -> tuple[str, str] | None:
        owner = self._young.get(request_id, _UNKNOWN)
        if owner is _UNKNOWN:
            owner = self._old.get(request_id, _UNKNOWN)
        if owner is not _UNKNOWN:
            return owner  # type: ignore[return-value]
        aggregate = UUID(request_id) if isinstance(request_id, str) else request_id
        stored = self.ledger.recorder.select_events(aggregate, limit=1)
        owner = None
        if stored and stored[0].topic == RECEIVED_TOPIC:
            fields = orjson.loads(stored[0].state)
            owner = (fields["tenant"], fields["key_id"])
        self._remember(request_id, owner)
        return owner

    def _remember(self, request_id: Any, owner: tuple[str, str] | None) -> None:
        young = self._young
        young[request_id] = owner
        if len(young) >= self.capacity:
            self._old = young
            self._young = {}


RECEIVED_TOPIC = get_topic(Request.Received)
_UNKNOWN = object()
