"""The ledger writer's fast path stores what the library would store, where the
library would store it, readable by the library's own readers:

- the writer stores byte for byte what `Application.save` would have stored;
- the PostgreSQL recorder's array insert keeps the library's table, columns and
  notification order (array order, one transaction per batch);
- the writer's commit on PostgreSQL is one statement (a function taking the library's
  lock and notifying its listeners); a recorder that did not create the tables
  appends the same rows through the pipelined transaction;
- a duplicate fails its batch alone and leaves the connection usable;
- the pool pings a connection only when the server has closed it (or sent something),
  so a terminated backend is replaced without failing a commit.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, ProgrammingError
from eventsourcing.postgres import PostgresApplicationRecorder

from ledger.application import Ledger
from ledger.events import Request
from ledger.recorders import FailFastPostgresRecorder, check_if_readable
from ledger.trace import RequestTrace
from ledger.writer import LedgerWriter
from tests.support import POSTGRES_BASE_URL

CANDIDATES = [{"requested": "openai/gpt-4o-mini", "model": "openai/gpt-4o-mini", "score": 0.5, "excluded": None}]


def full_trace(request_id: uuid.UUID) -> RequestTrace:
    """Every kind of request event, with the value types events carry."""
    trace = RequestTrace(request_id)
    trace.add(Request.Received, tenant="t", key_id="k", endpoint="chat.completions", model="auto", stream=True,
              body_bytes=10, body_sha256="00", messages=1)
    trace.add(Request.Routed, strategy="cost", candidates=CANDIDATES, chain=["openai/gpt-4o-mini"], reason="cheapest")
    trace.add(Request.AttemptStarted, attempt=1, provider="openai", model="openai/gpt-4o-mini")
    trace.add(Request.AttemptFailed, attempt=1, provider="openai", model="openai/gpt-4o-mini",
              error_code="rate_limited", status=429, retryable=True, latency_ms=1.5, message="rate limited")
    trace.add(Request.RetryScheduled, model="openai/gpt-4o-mini", delay_ms=12.5, retry_after_ms=None)
    trace.add(Request.AttemptStarted, attempt=2, provider="openai", model="openai/gpt-4o-mini")
    trace.add(Request.AttemptSucceeded, attempt=2, provider="openai", model="openai/gpt-4o-mini", status=200,
              ttft_ms=3.25, latency_ms=9.0)
    trace.add(Request.StreamSummarized, chunks=3, bytes=300, ttft_ms=3.25, duration_ms=9.0, finish_reason="stop",
              client_disconnected=False)
    trace.add(Request.UsageMetered, provider="openai", model="openai/gpt-4o-mini", input_tokens=5, output_tokens=7,
              cached_tokens=0, source="provider", price_book="v1", cost="0.000001234")
    trace.add(Request.Completed, status=200, latency_ms=9.5)
    return trace


def stored(ledger: Ledger, trace: RequestTrace) -> list:
    return [ledger.mapper.to_stored_event(e) for e in trace.domain_events()]


@pytest.fixture
def ledger(tmp_path: Path, store_url: str | None):
    opened = Ledger.open(store_url, tmp_path)
    yield opened
    opened.close()


def failed_trace(request_id: uuid.UUID) -> RequestTrace:
    trace = RequestTrace(request_id)
    trace.add(Request.Received, tenant="t", key_id="k", endpoint="messages", model="openai/gpt-4o-mini",
              stream=False, body_bytes=10, body_sha256="00", messages=2)
    trace.add(Request.Routed, strategy="explicit", candidates=CANDIDATES, chain=["openai/gpt-4o-mini"],
              reason="explicit model", options={"strategy": {"value": "cost", "from": "key"}})
    trace.add(Request.AttemptStarted, attempt=1, provider="openai", model="openai/gpt-4o-mini")
    trace.add(Request.AttemptFailed, attempt=1, provider="openai", model="openai/gpt-4o-mini",
              error_code="upstream_error", status=None, retryable=True, latency_ms=1.5, message="failed")
    trace.add(Request.CircuitOpened, model="openai/gpt-4o-mini", reason="5 consecutive failures", open_until=1.5e9)
    trace.add(Request.CircuitClosed, model="openai/gpt-4o-mini", reason="probe succeeded")
    trace.add(Request.UsageMetered, provider="openai", model="openai/gpt-4o-mini", input_tokens=5, output_tokens=0,
              cached_tokens=0, source="estimated", price_book="v1", cost="0.000000005", images=0)
    trace.add(Request.Failed, status=502, error_code="upstream_error", message="failed", latency_ms=2.0)
    return trace


@pytest.mark.parametrize("make", [full_trace, failed_trace])
def test_what_the_writer_stores_is_what_save_would_have_stored(ledger, make):
    """The same request's events through `Application.save` and through the writer
    (under another id): the same rows, byte for byte."""
    trace = make(uuid.uuid4())
    ledger.save(*trace.domain_events())
    copy = RequestTrace(uuid.uuid4())
    copy.entries = list(trace.entries)
    writer = LedgerWriter(ledger)
    writer.submit(copy).result(30)
    writer.close()

    def rows(request_id: uuid.UUID) -> list:
        return [(e.originator_version, e.topic, e.state) for e in ledger.recorder.select_events(request_id)]

    assert rows(copy.request_id) == rows(trace.request_id)


def test_the_writer_stores_what_the_library_reads_back_in_order(ledger):
    writer = LedgerWriter(ledger)
    traces = [full_trace(uuid.uuid4()) for _ in range(40)]
    for future in [writer.submit(t) for t in traces]:
        future.result(30)
    writer.close()
    notifications = ledger.recorder.select_notifications(start=1, limit=10_000)
    mine = {t.request_id for t in traces}
    ours = [n for n in notifications if n.originator_id in mine]
    assert len(ours) == 40 * 10
    # Notification ids follow the order events were handed over: per request, by version.
    assert [n.id for n in ours] == sorted(n.id for n in ours)
    for trace in traces:
        versions = [n.originator_version for n in ours if n.originator_id == trace.request_id]
        assert versions == list(range(1, 11))
    request = ledger.repository.get(traces[0].request_id)  # the library's own reader
    assert request.version == 10
    events = ledger.event_dicts(traces[0].request_id)
    assert events[1]["candidates"] == CANDIDATES and events[8]["cost"] == "0.000001234"


def test_postgres_uses_the_array_recorder_on_the_librarys_table(tmp_path, postgres_url):
    ledger = Ledger.open(postgres_url, tmp_path)
    try:
        assert isinstance(ledger.recorder, FailFastPostgresRecorder)
        assert isinstance(ledger.recorder, PostgresApplicationRecorder)
        assert ledger.recorder.datastore.pool._check is check_if_readable
        trace = full_trace(uuid.uuid4())
        ids = ledger.recorder.insert_events(stored(ledger, trace))
        assert ids is not None and len(ids) == 10 and ids == sorted(ids)
        schema = ledger.recorder.datastore.schema
        with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as conn:
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema, ledger.recorder.events_table_name),
            ).fetchall()
        assert columns == [("originator_id", "uuid"), ("originator_version", "bigint"), ("topic", "text"),
                           ("state", "bytea"), ("notification_id", "bigint")]
    finally:
        ledger.close()


def test_a_postgres_commit_is_one_statement_that_notifies_listeners(tmp_path, postgres_url):
    ledger = Ledger.open(postgres_url, tmp_path)
    try:
        recorder = ledger.recorder
        assert recorder.append_function_ready
        with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as listener:
            listener.execute(f'LISTEN "{recorder.channel_name}"')
            trace = full_trace(uuid.uuid4())
            recorder.append_events(stored(ledger, trace))
            assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == [recorder.channel_name]
        versions = [e.originator_version for e in recorder.select_events(trace.request_id)]
        assert versions == list(range(1, 11))
        # The commit went through the function: without it, the writer's append fails.
        with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as admin:
            admin.execute(f'DROP FUNCTION "{recorder.datastore.schema}".'
                          f'"twoapi_append_{recorder.events_table_name}"')
        with pytest.raises(ProgrammingError):
            recorder.append_events(stored(ledger, full_trace(uuid.uuid4())))
        recorder.create_table()  # as at start-up: the function is there again
        recorder.append_events(stored(ledger, full_trace(uuid.uuid4())))
    finally:
        ledger.close()


def test_a_recorder_that_did_not_create_the_tables_appends_through_the_pipeline(tmp_path, postgres_url):
    creator = Ledger.open(postgres_url, tmp_path)
    follower = Ledger(env={**creator.env, "CREATE_TABLE": "n"})
    try:
        assert not follower.recorder.append_function_ready
        trace = full_trace(uuid.uuid4())
        follower.recorder.append_events(stored(follower, trace))
        assert [e.originator_version for e in creator.recorder.select_events(trace.request_id)] == list(range(1, 11))
    finally:
        follower.close()
        creator.close()


def test_a_duplicate_fails_alone_and_the_connection_stays_usable(tmp_path, postgres_url):
    ledger = Ledger.open(postgres_url, tmp_path)
    try:
        recorder = ledger.recorder
        first = stored(ledger, full_trace(uuid.uuid4()))
        recorder.append_events(first)
        before = recorder.max_notification_id()
        with pytest.raises(IntegrityError):
            recorder.append_events(first[3:5])
        assert recorder.max_notification_id() == before  # nothing of the failed batch
        other = stored(ledger, full_trace(uuid.uuid4()))
        recorder.append_events(other)
        assert recorder.max_notification_id() > before
    finally:
        ledger.close()


def test_a_connection_the_server_closed_is_replaced_without_failing_a_commit(tmp_path, postgres_url):
    ledger = Ledger.open(postgres_url, tmp_path)
    try:
        recorder = ledger.recorder
        recorder.append_events(stored(ledger, full_trace(uuid.uuid4())))
        with recorder.datastore.get_connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)
        for _ in range(3):  # whichever pooled connection comes out, the commit succeeds
            recorder.append_events(stored(ledger, full_trace(uuid.uuid4())))
        with recorder.datastore.get_connection() as conn:
            assert conn.info.backend_pid != pid or not conn.closed
    finally:
        ledger.close()
