"""Running the tenancy projection: where its tables live, who runs it, and how far behind it is.

* The view's tables live beside the ledger: in the same PostgreSQL schema, or in
  `projections.sqlite3` in the data dir (a separate file, so the projection's
  writes never queue behind the ledger writer's on SQLite's single write lock).
* `ProjectionWorker` runs the projection in a thread (the gateway starts one by
  default; `twoapi projections run` is the same as a process of its own). Only one
  runs at a time per ledger: it holds a lease (a PostgreSQL advisory lock, or a
  `flock` on a file in the data dir) and the others wait to take over when it dies.
  Even without the lease, a batch commits only if the tracking position is still
  the one it follows (views.py), so two runners could not apply an event twice.
* It uses the library's `ProjectionRunner` and subscription: PostgreSQL's LISTEN/
  NOTIFY subscription, and for SQLite (whose recorder has none) a polling one.
* Both pull at most every `PULL_INTERVAL_S`. Each pull ends in a flush (one
  transaction on the view), and pulling on every NOTIFY made that one transaction
  per commit: at one request in flight ~2 ms of CPU per request beside the gateway,
  on a 2-core host CPU the gateway does not get. Paced, a flush carries whatever was
  committed in the interval; the lag it adds (at most the interval) is well inside
  the projection's budget (p99 <= 250 ms).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from traceback import format_exc
from typing import Any
from warnings import warn

import structlog
from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory, ListenNotifySubscription, Subscription
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresSubscription
from eventsourcing.projection import ProjectionRunner
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import Environment, get_topic

from ledger.application import Ledger
from ledger.projections.tenancy import PROJECTION_NAME, TOPICS, TenancyProjection
from ledger.projections.views import APPLICATION_NAME, PostgresTenancyView, SQLiteTenancyView, TenancyView
from ledger.recorders import FailFastPostgresRecorder
from ledger.store import connect_kwargs, persistence_env

log = structlog.get_logger("ledger.projections")

PULL_INTERVAL_S = 0.05
SEAL_INTERVAL_S = 10.0  # how often the leading projection worker seals new events
SEALER_STOP_S = 10.0  # how long a stopping worker waits for a seal in progress


# -- SQLite: a subscription that polls ----------------------------------------------


class PollingSubscription(ListenNotifySubscription[ApplicationRecorder]):
    """The library's pull loop, woken by a timer instead of NOTIFY."""

    def __init__(self, recorder: ApplicationRecorder, gt: int | None = None, topics: Sequence[str] = ()) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._ticker = threading.Thread(target=self._tick, name="projection-poll", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._has_been_stopped:
            time.sleep(PULL_INTERVAL_S)
            self._has_been_notified.set()

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._ticker.join()


class SubscribableSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return PollingSubscription(recorder=self, gt=gt, topics=topics)


# -- PostgreSQL: the library's LISTEN/NOTIFY subscription, paced ----------------------


class PacedPostgresSubscription(PostgresSubscription):
    """Pulls when notified, but not sooner than `PULL_INTERVAL_S` after the last pull
    (a backlog is still read page after page without pause)."""

    def __init__(self, recorder: PostgresApplicationRecorder, gt: int | None = None,
                 topics: Sequence[str] = ()) -> None:
        self._next_pull = 0.0
        self._stopped = threading.Event()
        super().__init__(recorder=recorder, gt=gt, topics=topics)

    def stop(self) -> None:
        self._stopped.set()
        super().stop()

    def _pull(self) -> None:
        pause = self._next_pull - time.monotonic()
        if pause > 0 and self._stopped.wait(pause):
            return
        self._next_pull = time.monotonic() + PULL_INTERVAL_S
        super()._pull()


class FollowingPostgresRecorder(FailFastPostgresRecorder):
    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return PacedPostgresSubscription(recorder=self, gt=gt, topics=topics)


# -- where the view lives -----------------------------------------------------------


def _is_postgres(database_url: str | None) -> bool:
    return bool(database_url)


def view_class(database_url: str | None) -> type[TenancyView]:
    return PostgresTenancyView if _is_postgres(database_url) else SQLiteTenancyView


def runner_env(database_url: str | None, data_dir: Path) -> dict[str, str]:
    """The environment of the runner: the ledger's store for the application, and for
    the view (prefixed with the projection's name) its own SQLite file."""
    env = dict(persistence_env(database_url, data_dir))
    prefix = PROJECTION_NAME.upper() + "_"
    if _is_postgres(database_url):
        # The runner's own Ledger: one connection LISTENs, one selects notifications.
        # It never creates the ledger's tables (DDL racing the gateway's own could
        # fail with "tuple concurrently updated"): until they exist it retries.
        env["LEDGER_CREATE_TABLE"] = "n"
        env["APPLICATION_RECORDER_TOPIC"] = get_topic(FollowingPostgresRecorder)
        env["LEDGER_POSTGRES_POOL_SIZE"] = "2"
        env["LEDGER_POSTGRES_MAX_OVERFLOW"] = "2"
        env[prefix + "POSTGRES_POOL_SIZE"] = "1"
        env[prefix + "POSTGRES_MAX_OVERFLOW"] = "4"
        env[prefix + "POSTGRES_CONNECT_TIMEOUT"] = "2"  # reads on the request path give up quickly
    else:
        env["APPLICATION_RECORDER_TOPIC"] = get_topic(SubscribableSQLiteApplicationRecorder)
        env[prefix + "SQLITE_DBNAME"] = str(data_dir / "projections.sqlite3")
    return env


def open_view(database_url: str | None, data_dir: Path) -> TenancyView:
    """The projection's tables, for reading (creates/migrates them if need be)."""
    env = Environment(PROJECTION_NAME, runner_env(database_url, data_dir))
    return InfrastructureFactory.construct(env).tracking_recorder(view_class(database_url))


def close_view(view: TenancyView) -> None:
    with contextlib.suppress(Exception):
        view.datastore.close()


# -- the runner: the library's, flushing batches when the subscription runs dry ----


class BatchingProjectionRunner(ProjectionRunner[Ledger, TenancyView]):
    projection: TenancyProjection

    @staticmethod
    def _process_events_loop(subscription: Any, projection: Any, is_stopping: threading.Event,
                             runner: weakref.ReferenceType[Any]) -> None:
        try:
            for domain_event, tracking in subscription:
                projection.process_event(domain_event, tracking)
                if projection.batch_full() or _drained(subscription.subscription):
                    projection.flush()
        except BaseException as error:
            _runner = runner()
            if _runner is not None:
                _runner._thread_error = error
            else:
                warn("projection runner gone before its error was recorded:\n" + format_exc(), RuntimeWarning,
                     stacklevel=2)
        finally:
            is_stopping.set()


def _drained(subscription: Any) -> bool:
    """Whether the library's subscription has no notification at hand (it would block)."""
    try:
        return subscription._notifications_index >= len(subscription._notifications) and (
            subscription._notifications_queue.empty()
        )
    except AttributeError:  # another kind of subscription: flush after every event
        return True


# -- the lease: one runner per ledger -------------------------------------------------


class Lease:
    def acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class FileLease(Lease):
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
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class AdvisoryLease(Lease):
    def __init__(self, database_url: str, name: str) -> None:
        self.database_url = database_url
        digest = hashlib.sha256(name.encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._conn: Any = None

    def acquire(self) -> bool:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return True
        conn = psycopg.connect(**connect_kwargs(self.database_url), autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if not row or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def lease_for(database_url: str | None, data_dir: Path, name: str = PROJECTION_NAME) -> Lease:
    """The lease of one kind of worker (a projection, the sealer) on one ledger."""
    if _is_postgres(database_url):
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(database_url or "")
        schema = parse_qs(url.query).get("schema", ["public"])[0]
        return AdvisoryLease(database_url or "", f"twoapi:{url.hostname}:{url.path}:{schema}:{name}")
    return FileLease(data_dir / ("projections.lock" if name == PROJECTION_NAME else f"{name}.lock"))


# -- the worker ------------------------------------------------------------------------


class ProjectionWorker:
    """Runs the projection in a thread while it holds the lease; retries after errors."""

    def __init__(self, database_url: str | None, data_dir: Path, retry_s: float = 1.0,
                 seal_interval_s: float | None = SEAL_INTERVAL_S) -> None:
        self.database_url = database_url
        self.seal_interval_s = seal_interval_s  # None: this worker does not seal
        self.data_dir = data_dir
        self.retry_s = retry_s
        self.lease = lease_for(database_url, data_dir)
        self.env = runner_env(database_url, data_dir)
        self.leading = False
        self.restarts = 0
        self.sealed = 0
        self._stopping = threading.Event()
        self._runner: BatchingProjectionRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ProjectionWorker:
        self._thread = threading.Thread(target=self._supervise, name="projection-tenancy", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        runner = self._runner
        if runner is not None:
            runner.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_forever(self) -> None:
        """Run in the calling thread until stopped (for `twoapi projections run`)."""
        self._supervise()

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self.lease.acquire():
                    self._stopping.wait(self.retry_s)
                    continue
            except Exception as error:
                log.warning("projection_lease_failed", error=type(error).__name__)
                self._stopping.wait(self.retry_s)
                continue
            self.leading = True
            try:
                self._run_once()
            except Exception as error:
                self.restarts += 1
                log.warning("projection_restarting", projection=PROJECTION_NAME, error=type(error).__name__,
                            detail=str(error)[:200])
                self._stopping.wait(self.retry_s)
            finally:
                self.leading = False
                self.lease.release()

    def _run_once(self) -> None:
        runner = BatchingProjectionRunner(
            application_class=Ledger,
            projection_class=TenancyProjection,
            view_class=view_class(self.database_url),
            env=self.env,
        )
        self._runner = runner
        try:
            with runner:
                if self._stopping.is_set():
                    return
                log.info("projection_started", projection=PROJECTION_NAME, position=runner.projection.position)
                with self._sealing(runner.app):
                    while not self._stopping.is_set():
                        runner.run_forever(timeout=0.5)
                        if runner.is_interrupted.is_set():
                            break
        finally:
            self._runner = None
            with contextlib.suppress(Exception):
                runner.view.datastore.close()

    @contextlib.contextmanager
    def _sealing(self, ledger: Ledger) -> Iterator[None]:
        """While it leads, the worker also seals the ledger every `seal_interval_s`
        (tamper evidence, ledger/audit/seal.py), in a thread of its own: a seal reads
        and hashes every event since the last one (21,000 at 300 requests/s), which in
        the projection's own loop held up its next pull and showed as its lag."""
        if self.seal_interval_s is None:
            yield
            return
        interval = self.seal_interval_s
        done = threading.Event()

        def seal_every() -> None:
            while not done.is_set():
                self._seal(ledger)
                done.wait(interval)

        sealer = threading.Thread(target=seal_every, name="ledger-sealer", daemon=True)
        sealer.start()
        try:
            yield
        finally:
            done.set()
            sealer.join(SEALER_STOP_S)

    def _seal(self, ledger: Ledger) -> None:
        """A failed seal is tried again next time and never stops the projection."""
        from ledger.audit.seal import seal_pending

        try:
            self.sealed += seal_pending(ledger)
        except Exception as error:
            log.warning("seal_failed", error=type(error).__name__, detail=str(error)[:200])


# -- status -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    position: int  # notification id of the last event applied
    head: int  # notification id of the ledger's last event
    pending: int  # events of this projection's topics not yet applied (capped at 10000)
    lag_s: float  # age of the oldest event not yet applied (0 when caught up)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "application": APPLICATION_NAME, "position": self.position, "head": self.head,
                "pending_events": self.pending, "lag_seconds": round(self.lag_s, 3)}


def status(ledger: Ledger, view: TenancyView, cap: int = 10_000) -> ProjectionStatus:
    position = view.position() or 0
    head = ledger.recorder.max_notification_id() or 0
    pending = ledger.recorder.select_notifications(
        start=position, limit=cap, topics=TOPICS, inclusive_of_start=False
    )
    lag_s = 0.0
    if pending:
        first = ledger.mapper.to_domain_event(pending[0])
        lag_s = max(0.0, (datetime.now(UTC) - first.timestamp).total_seconds())
    return ProjectionStatus(PROJECTION_NAME, position, head, len(pending), lag_s)


def caught_up(ledger: Ledger, view: TenancyView) -> bool:
    position = view.position() or 0
    return not ledger.recorder.select_notifications(start=position, limit=1, topics=TOPICS, inclusive_of_start=False)


def wait_caught_up(ledger: Ledger, view: TenancyView, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if caught_up(ledger, view):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def rebuild(database_url: str | None, data_dir: Path) -> None:
    """Drop the projection's rows and position, so it is rebuilt from the first event
    (stop every projection worker first; the lease is held while clearing)."""
    lease = lease_for(database_url, data_dir)
    if not lease.acquire():
        raise RuntimeError("a projection worker is running: stop it (or the gateways running one) first")
    try:
        view = open_view(database_url, data_dir)
        try:
            with view.datastore.transaction(commit=True) as c:
                for table in ("entries", "accounts", "usage_daily", "spend_monthly", "request_tenants",
                              "api_keys", "provider_credentials", "tenants"):
                    c.execute(view.sql(f"DELETE FROM @{table}"))
                c.execute(view.sql(f"DELETE FROM {view.tracking_table()} WHERE application_name = ?"),
                          (APPLICATION_NAME,))
        finally:
            close_view(view)
    finally:
        lease.release()


def catch_up(database_url: str | None, data_dir: Path, ledger: Ledger, view: TenancyView,
             timeout: float = 30.0) -> bool:
    """Bring the projection up to the ledger's last event: run it here for a moment if
    no worker holds the lease, else wait for the one that does. For commands that
    read the projection (the CLI) when no gateway may be running."""
    if caught_up(ledger, view):
        return True
    lease = lease_for(database_url, data_dir)
    if not lease.acquire():
        return wait_caught_up(ledger, view, timeout)
    try:
        deadline = time.monotonic() + timeout
        runner = BatchingProjectionRunner(application_class=Ledger, projection_class=TenancyProjection,
                                          view_class=view_class(database_url),
                                          env=runner_env(database_url, data_dir))
        try:
            with runner:
                while not caught_up(ledger, view):
                    if time.monotonic() >= deadline:
                        return False
                    runner.run_forever(timeout=0.02)
        finally:
            close_view(runner.view)
        return True
    finally:
        lease.release()
