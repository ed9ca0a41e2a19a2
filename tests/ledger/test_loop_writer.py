"""The ledger writer on the event loop (PostgreSQL) keeps the threaded writer's
contract without a thread:

- the gateway's writer is the loop's own on PostgreSQL, the threaded one on SQLite;
- requests committing together share statements (group commit), and every event is
  stored, readable by the library, in the order it was handed over;
- a duplicate fails its own request alone;
- a connection the server closed while idle is replaced without failing a commit;
- with the database gone, commits fail fast with LedgerUnavailable, and the writer
  connects again once it is back;
- what is queued without a waiter (`commit_later`) is stored by `stop`;
- a commit after `stop` is refused (LedgerUnavailable), never left waiting.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from ledger.application import Ledger
from ledger.loop_writer import LoopWriter, writer_for
from ledger.trace import RequestTrace
from ledger.writer import LedgerUnavailable, LedgerWriter
from tests.faults.private_postgres import PrivatePostgres
from tests.ledger.test_writer_fast_path import full_trace
from tests.support import POSTGRES_BASE_URL


@pytest.fixture
def pg_ledger(tmp_path: Path, postgres_url: str):
    opened = Ledger.open(postgres_url, tmp_path)
    yield opened
    opened.close()


def versions(ledger: Ledger, trace: RequestTrace) -> list[int]:
    return [e.originator_version for e in ledger.recorder.select_events(trace.request_id)]


async def test_the_gateway_writes_from_the_loop_on_postgres_and_from_a_thread_on_sqlite(pg_ledger, tmp_path):
    assert isinstance(writer_for(pg_ledger), LoopWriter)
    sqlite_ledger = Ledger.open(None, tmp_path / "sqlite")
    threaded = writer_for(sqlite_ledger)
    try:
        assert isinstance(threaded, LedgerWriter)
    finally:
        await threaded.stop()
        sqlite_ledger.close()


async def test_concurrent_commits_share_statements_and_every_event_is_stored_in_order(pg_ledger):
    writer = LoopWriter(pg_ledger)
    await writer.start()
    traces = [full_trace(uuid.uuid4()) for _ in range(60)]
    try:
        await asyncio.gather(*(writer.commit(t) for t in traces))
    finally:
        await writer.stop()
    assert writer.committed_events == 60 * 10
    assert writer.commits < 60  # some requests shared a statement
    notifications = pg_ledger.recorder.select_notifications(start=1, limit=10_000)
    mine = [n for n in notifications if n.originator_id in {t.request_id for t in traces}]
    assert len(mine) == 600
    assert [(n.originator_id, n.originator_version) for n in mine] == [
        (t.request_id, v) for t in traces for v in range(1, 11)
    ]
    assert pg_ledger.repository.get(traces[0].request_id).version == 10  # the library's own reader


async def test_a_duplicate_fails_its_own_request_alone(pg_ledger):
    writer = LoopWriter(pg_ledger)
    await writer.start()
    stored = full_trace(uuid.uuid4())
    duplicate = RequestTrace(stored.request_id)
    duplicate.entries = list(stored.entries)
    others = [full_trace(uuid.uuid4()) for _ in range(5)]
    try:
        await writer.commit(stored)
        results = await asyncio.gather(writer.commit(duplicate), *(writer.commit(t) for t in others),
                                       return_exceptions=True)
    finally:
        await writer.stop()
    assert isinstance(results[0], LedgerUnavailable)
    assert results[1:] == [None] * 5
    assert all(versions(pg_ledger, t) == list(range(1, 11)) for t in others)


async def test_a_connection_the_server_closed_is_replaced_without_failing_a_commit(pg_ledger):
    writer = LoopWriter(pg_ledger)
    await writer.start()
    try:
        await writer.commit(full_trace(uuid.uuid4()))
        assert writer._conn is not None
        pid = writer._conn.info.backend_pid
        with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await asyncio.sleep(0.2)
        trace = full_trace(uuid.uuid4())
        await writer.commit(trace)
        assert writer._conn.info.backend_pid != pid
    finally:
        await writer.stop()
    assert versions(pg_ledger, trace) == list(range(1, 11))


async def test_without_the_database_commits_fail_fast_and_the_writer_reconnects_when_it_is_back(tmp_path):
    server = PrivatePostgres()
    server.start()
    try:
        ledger = Ledger.open(server.url, tmp_path)
        writer = LoopWriter(ledger, down_pause_s=0.5)
        await writer.start()
        await writer.commit(full_trace(uuid.uuid4()))
        server.stop()
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable):
            await writer.commit(full_trace(uuid.uuid4()))
        # Within the pause, commits fail at once, without trying the database.
        quick = time.monotonic()
        with pytest.raises(LedgerUnavailable):
            await writer.commit(full_trace(uuid.uuid4()))
        assert time.monotonic() - quick < 0.25
        assert time.monotonic() - started < 5
        server.start()
        await asyncio.sleep(0.6)  # past the pause
        trace = full_trace(uuid.uuid4())
        await writer.commit(trace)
        await writer.stop()
        ledger.close()
        reader = Ledger.open(server.url, tmp_path)  # the library's pool lost its connections too
        assert versions(reader, trace) == list(range(1, 11))
        reader.close()
    finally:
        server.remove()


async def test_what_is_queued_without_a_waiter_is_stored_by_stop(pg_ledger):
    writer = LoopWriter(pg_ledger)
    await writer.start()
    traces = [full_trace(uuid.uuid4()) for _ in range(3)]
    for trace in traces:
        writer.commit_later(trace)
    await writer.stop()
    assert all(versions(pg_ledger, t) == list(range(1, 11)) for t in traces)


async def test_a_commit_after_stop_is_refused_rather_than_left_waiting(pg_ledger):
    writer = LoopWriter(pg_ledger)
    await writer.start()
    await writer.stop()
    trace = full_trace(uuid.uuid4())
    with pytest.raises(LedgerUnavailable):
        await asyncio.wait_for(writer.commit(trace), 5)
    writer.commit_later(trace)  # logged as dropped: nothing will commit it
    assert versions(pg_ledger, trace) == []
