"""A projection batch's request owners and ledger entries land in the view row for row,
on SQLite (one INSERT each) and on PostgreSQL (one statement of arrays per table):
values and types as given, NULL tenants kept, entries in batch order, a request owner
already there left alone, and a duplicate entry failing the whole batch (its tracking
position included), as before."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from ledger.projections.runner import APPLICATION_NAME, close_view, open_view
from ledger.projections.views import Batch, TenancyView

AT = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


@pytest.fixture
def view(tmp_path: Path, store_url: str | None) -> Iterator[TenancyView]:
    opened = open_view(store_url, tmp_path)
    yield opened
    close_view(opened)


def batch(after: int | None, position: int, requests: list, entries: list) -> Batch:
    return Batch(after=after, requests=requests, entries=entries, last=Tracking(APPLICATION_NAME, position))


def rows(view: TenancyView, table: str, columns: str, order: str) -> list[tuple]:
    with view.reading() as c:
        c.execute(view.sql(f"SELECT {columns} FROM @{table} ORDER BY {order}"))
        return [tuple(row[name.strip()] for name in columns.split(",")) for row in c.fetchall()]


def test_request_owners_and_entries_land_row_for_row(view):
    requests = [(uuid.uuid4().hex, f"tenant-{i % 3}", f"key-{i}", AT + timedelta(microseconds=i)) for i in range(50)]
    entries = []
    for i in range(50):
        event_id = f"{requests[i][0]}/6"
        cost = Decimal("0.000001234") * (i + 1)
        entries.append((event_id, 100 + i, f"tenant:tenant-{i % 3}", f"tenant-{i % 3}", -cost, "usage", "", AT))
        entries.append((event_id, 100 + i, "platform:revenue", None, cost, "usage", "", AT))
    view.apply(batch(None, 149, requests, entries))

    owners = rows(view, "request_tenants", "request_id, tenant, key_id", "request_id")
    assert owners == sorted((r, t, k) for r, t, k, _ in requests)
    stored = rows(view, "entries", "event_id, position, account, tenant, amount, kind", "entry_id")
    assert [(e, p, a, t, Decimal(str(m)), k) for e, p, a, t, m, k in stored] == \
           [(e, p, a, t, m, k) for e, p, a, t, m, k, _, _ in entries]  # in batch order, NULL tenants kept

    # A request owner already there is left alone; the batch goes on.
    again = [(requests[0][0], "someone-else", "key-x", AT)]
    view.apply(batch(149, 150, again, []))
    assert "someone-else" not in {t for (t,) in rows(view, "request_tenants", "tenant", "request_id")}


def test_a_duplicate_entry_fails_the_whole_batch(view):
    entry = ("req/6", 7, "tenant:acme", "acme", Decimal("-0.5"), "usage", "", AT)
    view.apply(batch(None, 7, [("req", "acme", "k", AT)], [entry]))
    with pytest.raises((sqlite3.IntegrityError, IntegrityError)):  # as each store raises it
        view.apply(batch(7, 8, [("req2", "acme", "k", AT)], [entry]))
    assert len(rows(view, "entries", "entry_id", "entry_id")) == 1
    assert rows(view, "request_tenants", "request_id", "request_id") == [("req",)]  # req2 rolled back
    assert view.max_tracking_id(APPLICATION_NAME) == 7
