"""`twoapi projections rebuild`: the tenancy projection dropped and replayed from the
ledger equals the one that followed it live, row for row."""

from __future__ import annotations

from typing import Any

from ledger.projections.runner import close_view, open_view
from tests.audit.test_cli import twoapi
from tests.audit.traffic import make_traffic

TABLES = {  # table -> its columns that are derived from events (entry_id is a serial)
    "tenants": "*", "accounts": "*", "api_keys": "*", "request_tenants": "*", "usage_daily": "*",
    "spend_monthly": "*", "provider_credentials": "*",
    "entries": "event_id, position, account, tenant, amount, kind, reference, at",
}


def snapshot(gw: Any) -> dict[str, list[tuple[str, ...]]]:
    view = open_view(gw.settings.database_url, gw.settings.data_dir)
    try:
        tables = {}
        with view.reading() as c:
            for table, columns in TABLES.items():
                c.execute(view.sql(f"SELECT {columns} FROM @{table}"))
                tables[table] = sorted(tuple(str(v) for v in dict(r).values()) for r in c.fetchall())
        return tables
    finally:
        close_view(view)


def test_a_rebuilt_projection_equals_the_live_one(gw, admin, ledger_and_view, tmp_path):
    ledger, view = ledger_and_view
    make_traffic(gw, admin, ledger, view)
    admin.ok("PUT", "/admin/tenants/acme/limits", json={"rpm": 100, "tpm": None, "monthly_cap": "50"})
    admin.ok("POST", "/admin/tenants/beta/suspend", json={"reason": "audit"})
    admin.ok("PUT", "/admin/tenants/acme/provider-keys/openai", json={"api_key": "sk-tenant-own-key-123"})
    prices = tmp_path / "p.json"
    prices.write_text('{"openai/gpt-4o-mini": {"input": "1", "output": "2"}}')
    assert twoapi(gw, "reprice", "--price-book", str(prices), "--apply").returncode == 0
    assert twoapi(gw, "projections", "status").returncode == 0  # brings it up to date
    live = snapshot(gw)
    assert all(live[t] for t in ("tenants", "accounts", "entries", "usage_daily", "provider_credentials"))

    gw.stop()  # the running worker holds the projection's lease
    rebuilt = twoapi(gw, "projections", "rebuild", "tenancy")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert snapshot(gw) == live
