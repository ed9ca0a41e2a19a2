"""The audit commands as a finance team runs them: `twoapi ledger verify|seal|export`
and `twoapi reprice`, against a gateway's ledger; exports reconcile with /v1/usage
and the projection's balances."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from tests.audit.traffic import make_traffic, unsealed_head
from tests.tenancy.conftest import caught_up


def twoapi(gw: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TWOAPI_DATA_DIR": str(gw.settings.data_dir), "TWOAPI_ADMIN_TOKEN": ""}
    env.pop("DATABASE_URL", None)
    if gw.settings.database_url:
        env["DATABASE_URL"] = gw.settings.database_url
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def days() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return today.isoformat(), (today + timedelta(days=1)).isoformat()


def usage(gw: Any, key: str) -> dict[str, Any]:
    day = datetime.now(UTC).date().isoformat()
    response = httpx.get(gw.api_url + "/usage", params={"start": day, "end": day},
                         headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_verify_exits_zero_on_a_clean_ledger_and_one_naming_an_edit(gw, admin, ledger_and_view):
    from tests.audit.test_tamper import run_sql

    ledger, view = ledger_and_view
    make_traffic(gw, admin, ledger, view)
    sealed = twoapi(gw, "ledger", "seal")
    assert sealed.returncode == 0 and sealed.stdout.startswith("sealed "), sealed.stderr
    clean = twoapi(gw, "ledger", "verify", "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert report["ok"] and report["findings"] == [] and "projection" in report["checked"]
    assert report["analytics"].startswith("not compared")

    credit = next(r for r in ledger.recorder.select_notifications(0, 10_000) if r.topic.endswith("CreditsAdded"))
    placeholder = "%s" if gw.settings.database_url else "?"
    run_sql(gw, ledger, f"UPDATE {{table}} SET state = {placeholder} WHERE {{position}} = {placeholder}",
            (bytes(credit.state).replace(b'"amount":"5', b'"amount":"9', 1), credit.id))
    dirty = twoapi(gw, "ledger", "verify")
    assert dirty.returncode == 1
    assert f"MISMATCH tamper: event {credit.originator_id}/{credit.originator_version}" in dirty.stdout
    assert "MISMATCH balance: tenant:acme: events say" in dirty.stdout  # the credit edit shows in the balance


def test_exports_in_every_format_reconcile_with_usage_and_balances(gw, admin, ledger_and_view, tmp_path: Path):
    ledger, view = ledger_and_view
    traffic = make_traffic(gw, admin, ledger, view)
    prices = tmp_path / "double.json"
    prices.write_text(json.dumps({"gpt-4o-mini": {"input": "0.30", "output": "1.20"}}))  # an alias: as the catalog
    applied = twoapi(gw, "reprice", "--price-book", str(prices), "--apply", "--format", "json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["applied"]["events"] == 2
    caught_up(ledger, view)
    start, end = days()
    for tenant in ("acme", "beta"):
        expected = usage(gw, traffic.key(tenant))
        out = tmp_path / f"{tenant}.csv"
        done = twoapi(gw, "ledger", "export", "--tenant", tenant, "--from", start, "--to", end, "-o", str(out))
        assert done.returncode == 0, done.stderr
        items = list(csv.DictReader(out.open()))
        assert {i["tenant"] for i in items} == {tenant}
        assert sum(Decimal(i["cost"]) for i in items) == Decimal(expected["total"]["cost"])
        assert sum(Decimal(i["amount"]) for i in items) == Decimal(expected["balance"])  # all of it is today
        assert sum(int(i["input_tokens"]) for i in items) == expected["total"]["input_tokens"]
        assert {i["kind"] for i in items} == {"usage", "reprice", "credit", "adjustment"}  # the run's adjustment
        assert all(i["price_book"] and i["price_input"] for i in items if i["kind"] == "usage")

    everything = twoapi(gw, "ledger", "export", "--format", "jsonl")
    lines = [json.loads(line) for line in everything.stdout.splitlines()]
    parquet = tmp_path / "all.parquet"
    assert twoapi(gw, "ledger", "export", "--format", "parquet", "-o", str(parquet)).returncode == 0
    table = pq.read_table(parquet).to_pylist()
    assert len(table) == len(lines) > 0
    balances = {t["name"]: Decimal(t["balance"]) for t in admin.ok("GET", "/admin/tenants")["data"]}
    for tenant, balance in balances.items():
        assert sum(Decimal(line["amount"]) for line in lines if line["tenant"] == tenant) == balance
        assert sum(row["amount"] for row in table if row["tenant"] == tenant) == balance  # Decimal in parquet


def test_reprice_dry_run_prints_a_table_and_records_nothing(gw, admin, ledger_and_view, tmp_path: Path):
    ledger, view = ledger_and_view
    make_traffic(gw, admin, ledger, view)
    head = unsealed_head(ledger)
    same = twoapi(gw, "reprice", "--price-book", "base", "--format", "csv")
    assert same.returncode == 0, same.stderr
    rows = list(csv.reader(io.StringIO(same.stdout)))
    assert rows[0] == ["tenant", "model", "events", "old_cost", "new_cost", "delta"]
    assert rows[-1][0] == "TOTAL" and Decimal(rows[-1][5]) == 0 and int(rows[-1][2]) == 6
    table = twoapi(gw, "reprice", "--price-book", "base")
    assert "dry run: nothing recorded" in table.stdout and "TOTAL" in table.stdout
    assert unsealed_head(ledger) == head
    bad = twoapi(gw, "reprice", "--price-book", "no-such-version")
    assert bad.returncode == 2 and "no file and no price-book version" in bad.stderr
