"""The analytics projection: follows the ledger's notification log into ClickHouse.

Exactly-once, with all state in the analytics store itself (so wiping the store
restarts the projection from the beginning of the ledger). Per batch:

1. insert its rows into `ledger_events`, `attempts`, `requests` and
   `cost_corrections`, each insert with a dedup token naming the batch
   (`analytics:<first>-<last>:<table>`);
2. record `<last>` as the position (`projection_state`).

`ledger_events` gets a row for every event of a batch and is written first, so after
a crash its largest notification id above the recorded position is the end of the
batch that was in flight. The next start ships exactly that range again: the same
notifications, so the same rows and the same tokens, and ClickHouse drops the blocks
it already has, in the tables and in the rollups' materialized views. A restart
mid-batch therefore neither loses nor double-counts.

Batches are cut only between requests: a request's events are committed in one
transaction, and the rows of a request need all of them.

A re-pricing correction (`UsageRepriced`) is placed with the row of the request it
corrects: from the same batch, or else read from `requests`, where every earlier
batch is already complete (the position moves only after a batch's inserts). So a
batch re-shipped after a crash places its corrections exactly as the first time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog

from analytics import rows as R
from analytics.config import AnalyticsConfig
from analytics.lease import Lease, projection_lease
from analytics.store import AnalyticsStore, StoreUnavailable, migrate
from ledger.application import Ledger

log = structlog.get_logger("analytics.projection")

NAME = "analytics"
EXTEND_STEP = 200  # notifications read at a time to finish a request cut by the page
LOOKUP_CHUNK = 5000  # request ids per query when placing re-pricing corrections


@dataclass(frozen=True, slots=True)
class Position:
    position: int  # the last notification shipped and recorded
    in_flight_to: int = 0  # > position: a batch was being shipped up to here when the last run stopped

    @property
    def pending(self) -> bool:
        return self.in_flight_to > self.position


class AnalyticsProjection:
    """One step at a time; `ProjectionRunner` drives it in a thread."""

    def __init__(self, ledger: Ledger, store: AnalyticsStore, batch_size: int = 5000, name: str = NAME) -> None:
        self.ledger = ledger
        self.store = store
        self.batch_size = batch_size
        self.name = name
        self._owners: dict[UUID, R.Owner] = {}
        # This projection is the store's only writer of its state (the lease), so
        # the state is read once and then kept here.
        self._state: Position | None = None

    # -- state ---------------------------------------------------------------

    def position(self) -> Position:
        if self._state is None:
            self._state = self._read_state()
        return self._state

    def _read_state(self) -> Position:
        position = int(self.store.scalar(
            "SELECT argMax(position, version) FROM projection_state WHERE name = {name:String}",
            {"name": self.name}) or 0)
        in_flight = int(self.store.scalar(
            "SELECT max(notification_id) FROM ledger_events WHERE notification_id > {p:UInt64}",
            {"p": position}) or 0)
        return Position(position, in_flight)

    def _save_state(self, position: int) -> None:
        self.store.insert(
            "projection_state",
            ("name", "position", "updated", "version"),
            [(self.name, position, datetime.now(UTC), time.time_ns())],
            token=f"{self.name}:state:{time.time_ns()}",
        )
        self._state = Position(position)

    # -- one step ------------------------------------------------------------

    def step(self) -> int:
        """Ship the batch left in flight, if any, else the next batch. The number of
        ledger events shipped (0: caught up)."""
        state = self.position()
        if state.pending:
            events = self._read_range(state.position + 1, state.in_flight_to)
        else:
            events = self._read_batch(state.position)
        if not events:
            return 0
        self._ship(events)
        return len(events)

    def catch_up(self, max_steps: int = 1_000_000) -> int:
        shipped = 0
        for _ in range(max_steps):
            count = self.step()
            if count == 0:
                break
            shipped += count
        return shipped

    def _ship(self, events: Sequence[R.LedgerEvent]) -> None:
        first, last = events[0].notification_id, events[-1].notification_id
        rows = R.build_rows(events, self._owner_of, self._requests_shipped)
        if rows.unplaced:
            log.warning("analytics_corrections_without_request", count=rows.unplaced, first=first, last=last)
        self._insert(rows, f"{self.name}:{first}-{last}")
        self._save_state(last)

    def _insert(self, rows: R.Rows, token: str) -> None:
        # Ledger lines first: they mark how far the batch got (see the module doc).
        # Requests last: the rollups hang off them, and a dashboard that sees a
        # request in a rollup should find its lines too.
        self.store.insert("ledger_events", R.EVENT_COLUMNS, rows.events, token + ":ledger_events")
        self.store.insert("attempts", R.ATTEMPT_COLUMNS, rows.attempts, token + ":attempts")
        self.store.insert("requests", R.REQUEST_COLUMNS, rows.requests, token + ":requests")
        self.store.insert("cost_corrections", R.CORRECTION_COLUMNS, rows.corrections, token + ":cost_corrections")

    def _requests_shipped(self, request_ids: set[str], hints: Sequence[tuple[str, datetime]]
                          ) -> dict[str, R.RequestKey]:
        """Rows of requests shipped in earlier batches, for the re-pricing corrections
        that name them. `hints` are the corrections' (tenant, usage day): a request
        is received on its usage's day or the day before, so the first look reads only
        those days of those tenants; whatever it misses is looked for everywhere."""
        found: dict[str, R.RequestKey] = {}
        tenants = sorted({tenant for tenant, _ in hints})
        days = [day for _, day in hints]
        narrow = {"tenants": tenants, "lo": _ch_time(min(days) - timedelta(days=1)),
                  "hi": _ch_time(max(days) + timedelta(days=1))} if hints else None
        for where, values in (("tenant IN {tenants:Array(String)} AND time >= {lo:DateTime64(3, 'UTC')}"
                               " AND time < {hi:DateTime64(3, 'UTC')} AND ", narrow), ("", {})):
            if values is None:
                continue
            wanted = sorted(request_ids - found.keys())
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start:start + LOOKUP_CHUNK]
                _, rows = self.store.query(
                    "SELECT request_id, any(time), any(tenant), any(key_id), any(provider), any(model) FROM requests"
                    f" WHERE {where}request_id IN {{ids:Array(String)}} GROUP BY request_id",
                    {**values, "ids": chunk})
                for request_id, time_, tenant, key_id, provider, model in rows:
                    when = time_ if time_.tzinfo else time_.replace(tzinfo=UTC)
                    found[request_id] = R.RequestKey(when, tenant, key_id, provider, model)
            if len(found) == len(request_ids):
                break
        return found

    # -- reading the ledger --------------------------------------------------

    def _read_batch(self, after: int) -> list[R.LedgerEvent]:
        recorder = self.ledger.recorder
        page = recorder.select_notifications(after + 1, self.batch_size)
        events = [self._decode(n) for n in page]
        if len(page) < self.batch_size:
            return events  # the end of the log: only whole transactions are visible
        # A full page may end inside a request: read on, one event at a time, until
        # the requests it left open are whole (their events are contiguous).
        still_open = R.open_requests(events)
        while still_open:
            more = recorder.select_notifications(events[-1].notification_id + 1, EXTEND_STEP)
            for notification in more:
                event = self._decode(notification)
                events.append(event)
                if event.name in R.TERMINAL:
                    still_open.discard(event.originator_id)
                elif event.aggregate == "Request" and event.version == 1:
                    still_open.add(event.originator_id)
                if not still_open:
                    break
            if len(more) < EXTEND_STEP:
                break
        return events

    def _read_range(self, first: int, last: int) -> list[R.LedgerEvent]:
        page = self.ledger.recorder.select_notifications(first, last - first + 1, stop=last)
        return [self._decode(n) for n in page]

    def _decode(self, notification: Any) -> R.LedgerEvent:
        return R.decode(notification, self.ledger.mapper)

    def _owner_of(self, aggregate_id: UUID) -> R.Owner | None:
        owner = self._owners.get(aggregate_id)
        if owner is None:
            stored = self.ledger.recorder.select_events(aggregate_id, limit=1)
            if not stored:
                return None
            first = R.decode(stored[0], self.ledger.mapper)
            owner = R.first_event_owner(first) or R.Owner(tenant="")  # e.g. the price book: nobody's
            if len(self._owners) > 100_000:
                self._owners.clear()
            self._owners[aggregate_id] = owner
        return owner

    def head(self) -> int:
        return int(self.ledger.recorder.max_notification_id() or 0)

    def oldest_unshipped(self, position: int) -> datetime | None:
        page = self.ledger.recorder.select_notifications(position + 1, 1)
        return self._decode(page[0]).time if page else None


@dataclass
class ProjectionStatus:
    name: str = NAME
    engine: str = ""
    store: str = ""
    state: str = "starting"  # starting | running | caught_up | store_unavailable | standby | stopped
    position: int = 0
    head: int = 0
    lag_events: int = 0
    lag_seconds: float = 0.0
    shipped_events: int = 0
    batches: int = 0
    last_batch_ms: float = 0.0
    last_error: str | None = None
    updated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class ProjectionRunner:
    """Runs the projection in a daemon thread: reconnects when the store goes away,
    waits for the lease when another process projects, and keeps a status."""

    def __init__(self, config: AnalyticsConfig, database_url: str | None, lease: Lease | None = None) -> None:
        self.config = config
        self.database_url = database_url
        self.status = ProjectionStatus(engine=config.engine)
        self._lease = lease or projection_lease(config.data_dir, database_url, _identity(config))
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._ledger: Ledger | None = None
        self._store: AnalyticsStore | None = None
        self._current: AnalyticsProjection | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="analytics-projection", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.status.state = "stopped"

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        delay = self.config.poll_s
        try:
            while not self._stop.is_set():
                try:
                    # Straight on only after a full batch (more is waiting). Otherwise
                    # wait: every ship costs a few ClickHouse inserts (~15 ms of CPU
                    # each, whatever their size), so trickling traffic is shipped a
                    # poll interval's worth at a time, not request by request.
                    full = self._cycle()
                    delay = 0.0 if full else self.config.poll_s
                except StoreUnavailable as error:
                    self._close_store()
                    self._note_error("store_unavailable", str(error))
                    delay = min(max(delay * 2, 0.25), self.config.retry_max_s)
                except Exception as error:  # a bug or a ledger outage: log, back off, retry
                    self._close_store()
                    log.exception("analytics_projection_failed")
                    self._note_error("error", f"{type(error).__name__}: {error}")
                    delay = min(max(delay * 2, 0.5), self.config.retry_max_s)
                if delay:
                    self._wake.wait(delay)
                    self._wake.clear()
        finally:
            self._close_store()
            self._lease.release()
            if self._ledger is not None:
                self._ledger.close()

    def _cycle(self) -> bool:
        if not self._lease.acquire():
            self.status.state = "standby"
            self.status.last_error = "another process runs the analytics projection for this store"
            self._close_store()
            return False
        projection = self._projection()
        started = time.perf_counter()
        shipped = projection.step()
        full = shipped >= self.config.batch_size
        state = projection.position()
        head = projection.head()
        status = self.status
        if shipped:
            status.batches += 1
            status.shipped_events += shipped
            status.last_batch_ms = round((time.perf_counter() - started) * 1000, 2)
        status.position, status.head = state.position, head
        status.lag_events = max(head - state.position, 0)
        oldest = projection.oldest_unshipped(state.position) if status.lag_events else None
        status.lag_seconds = round((datetime.now(UTC) - oldest).total_seconds(), 3) if oldest else 0.0
        status.state = "running" if status.lag_events else "caught_up"
        status.last_error = None
        status.updated_at = datetime.now(UTC).isoformat()
        return full

    def _projection(self) -> AnalyticsProjection:
        if self._ledger is None:
            self._ledger = Ledger.open(self.database_url, self.config.data_dir)
        if self._store is None:
            store = AnalyticsStore.open(self.config)
            try:
                migrate(store)
            except Exception:
                store.close()
                raise
            self._store = store
            self._current = AnalyticsProjection(self._ledger, store, self.config.batch_size)
            self.status.store = store.where
            log.info("analytics_store_connected", engine=store.engine, store=store.where)
        assert self._current is not None
        return self._current

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._current = None

    def _note_error(self, state: str, message: str) -> None:
        if self.status.state != state or self.status.last_error != message:
            log.warning("analytics_projection_waiting", state=state, error=message)
        self.status.state = state
        self.status.last_error = message
        self.status.updated_at = datetime.now(UTC).isoformat()


def _ch_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _identity(config: AnalyticsConfig) -> str:
    if config.clickhouse_url:
        return config.clickhouse_url.rpartition("@")[2]
    return str(config.chdb_path.resolve())
