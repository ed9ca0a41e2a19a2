"""Tamper evidence: a stored event row edited or deleted behind the ledger's back, in
PostgreSQL and in SQLite, is found by `verify`, which names that very event."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from psycopg import sql

from gateway.price_list import base_price_book
from ledger.audit.scan import rows, topics
from ledger.audit.seal import seal_pending
from ledger.audit.verify import verify
from ledger.events import LedgerSeal, Request
from ledger.store import connect_kwargs
from tests.audit.traffic import make_traffic


def run_sql(gw: Any, ledger: Any, statement: str, params: tuple[Any, ...]) -> int:
    """Run a statement on the ledger's events table as someone with database access
    would (`{table}` and `{position}` name the table and its notification-id column)."""
    table = ledger.recorder.events_table_name
    database_url = gw.settings.database_url
    if database_url is None:
        with sqlite3.connect(gw.settings.data_dir / "ledger.sqlite3") as conn:
            return conn.execute(statement.format(table=table, position="rowid"), params).rowcount
    schema = ledger.recorder.datastore.schema
    query = sql.SQL(statement.format(table="{}.{}", position="notification_id")).format(
        sql.Identifier(schema), sql.Identifier(table))
    with psycopg.connect(**connect_kwargs(database_url), autocommit=True) as conn:
        return conn.execute(query, params).rowcount


def sealed_usage(gw: Any, admin: Any, ledger_and_view: Any) -> tuple[Any, Any, Any]:
    ledger, view = ledger_and_view
    make_traffic(gw, admin, ledger, view)
    seal_pending(ledger)
    assert verify(ledger, base_price_book(), view).ok
    usage = list(rows(ledger, only=topics(Request.UsageMetered)))
    return ledger, view, usage[2]


def tamper_findings(ledger: Any, view: Any) -> list[Any]:
    report = verify(ledger, base_price_book(), view)
    assert not report.ok
    return [f for f in report.findings if f.check == "tamper"]


def test_an_edited_usage_row_is_reported_as_that_event(gw, admin, ledger_and_view):
    ledger, view, target = sealed_usage(gw, admin, ledger_and_view)
    edited = target.state.replace(b'"cost":"', b'"cost":"0', 1)  # 0.000123 -> 00.000123: same value, other bytes
    changed = run_sql(gw, ledger, "UPDATE {table} SET state = %s WHERE {position} = %s"
                      if gw.settings.database_url else "UPDATE {table} SET state = ? WHERE {position} = ?",
                      (edited, target.position))
    assert changed == 1
    findings = tamper_findings(ledger, view)
    assert [f.subject for f in findings] == [f"event {target.event_id}"]
    assert f"position {target.position}" in findings[0].detail and "changed" in findings[0].detail


def test_a_cheaper_usage_row_breaks_the_seal_and_the_cost_invariant(gw, admin, ledger_and_view):
    ledger, view, target = sealed_usage(gw, admin, ledger_and_view)
    fields = target.fields()
    edited = target.state.replace(f'"cost":"{fields["cost"]}"'.encode(), b'"cost":"0.000000001"')
    placeholder = "%s" if gw.settings.database_url else "?"
    run_sql(gw, ledger, f"UPDATE {{table}} SET state = {placeholder} WHERE {{position}} = {placeholder}",
            (edited, target.position))
    report = verify(ledger, base_price_book(), view)
    subjects = {(f.check, f.subject) for f in report.findings}
    assert ("tamper", f"event {target.event_id}") in subjects
    assert ("invariant", f"event {target.event_id}") in subjects  # the cost no longer follows the book


def test_a_deleted_row_is_reported_by_its_position(gw, admin, ledger_and_view):
    ledger, view, target = sealed_usage(gw, admin, ledger_and_view)
    placeholder = "%s" if gw.settings.database_url else "?"
    deleted = run_sql(gw, ledger, f"DELETE FROM {{table}} WHERE {{position}} = {placeholder}", (target.position,))
    assert deleted == 1
    findings = tamper_findings(ledger, view)
    assert [f.subject for f in findings] == [f"position {target.position}"]
    assert "deleted" in findings[0].detail


def test_an_edited_seal_breaks_the_chain(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    make_traffic(gw, admin, ledger, view, requests=4)
    seal_pending(ledger, max_events=10)
    first_seal = next(rows(ledger, only=topics(LedgerSeal.LedgerSealed)))
    count = first_seal.fields()["count"]  # the gateway may have sealed first: whatever it covers
    placeholder = "%s" if gw.settings.database_url else "?"
    run_sql(gw, ledger, f"UPDATE {{table}} SET state = {placeholder} WHERE {{position}} = {placeholder}",
            (first_seal.state.replace(b'"count":%d' % count, b'"count":%d' % (count - 1), 1), first_seal.position))
    findings = tamper_findings(ledger, view)
    assert any(f.subject.startswith("seal 2 ") and "chain hash" in f.detail for f in findings)
    assert any(f.subject == f"event {first_seal.event_id}" for f in findings)  # the next seal covers it
