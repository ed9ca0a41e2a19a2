"""Re-pricing by replay: dry runs change nothing, --apply corrects usage and balances
once, and everything derived follows (projection, /v1/usage, verify)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from gateway.price_list import base_price_book
from ledger.audit.verify import verify
from ledger.price_books import book_of
from ledger.repricing import apply, corrected_event_ids, plan
from tests.audit.traffic import make_traffic, unsealed_head
from tests.tenancy.conftest import caught_up

DOUBLE_MINI = {"openai/gpt-4o-mini": {"input": "0.30", "output": "1.20", "cached_input": "0.15"}}


def today_window() -> tuple[datetime, datetime]:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def usage_total(gw, key: str) -> Decimal:
    day = datetime.now(UTC).date().isoformat()
    response = httpx.get(gw.api_url + "/usage", params={"start": day, "end": day},
                         headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return Decimal(response.json()["total"]["cost"])


def test_re_pricing_with_the_book_that_charged_gives_zero_delta_and_records_nothing(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    make_traffic(gw, admin, ledger, view)
    head = unsealed_head(ledger)
    result = plan(ledger, base_price_book(), *today_window())
    report = result.report()
    assert report["events"] == 6 and report["changed"] == 0
    assert Decimal(report["total"]["delta"]) == 0 and Decimal(report["total"]["old_cost"]) > 0
    assert unsealed_head(ledger) == head  # a dry run writes nothing


def test_applying_a_run_corrects_usage_and_balances_once(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    traffic = make_traffic(gw, admin, ledger, view)
    tenants = {t: admin.ok("GET", f"/admin/tenants/{t}") for t in ("acme", "beta")}
    usage_before = {t: usage_total(gw, traffic.key(t)) for t in ("acme", "beta")}

    result = plan(ledger, book_of("double-mini", DOUBLE_MINI), *today_window(), prices=DOUBLE_MINI)
    lines = {(line["tenant"], line["model"]): line for line in result.report()["lines"]}
    mini = lines[("beta", "openai/gpt-4o-mini")]  # request 3
    assert Decimal(mini["new_cost"]) == 2 * Decimal(mini["old_cost"]) > 0
    assert result.unpriced == 4  # requests 1, 2, 4, 5: the other models keep their cost
    deltas = result.deltas()

    applied = apply(ledger, result)
    assert not applied.already and applied.events == result.changed == 2
    head = unsealed_head(ledger)
    again = apply(ledger, plan(ledger, book_of("double-mini", DOUBLE_MINI), *today_window(), prices=DOUBLE_MINI))
    assert again.already and again.run_id == applied.run_id
    assert unsealed_head(ledger) == head  # applying twice records nothing more
    assert len(corrected_event_ids(ledger, applied.run_id)) == 2

    caught_up(ledger, view)
    for name in ("acme", "beta"):
        balance = Decimal(admin.ok("GET", f"/admin/tenants/{name}")["balance"])
        assert balance == Decimal(tenants[name]["balance"]) - deltas.get(name, Decimal(0))
        assert usage_total(gw, traffic.key(name)) == usage_before[name] + deltas.get(name, Decimal(0))
    # Re-pricing again with the same book now changes nothing: costs stand corrected.
    assert plan(ledger, book_of("double-mini", DOUBLE_MINI), *today_window()).changed == 0
    report = verify(ledger, base_price_book(), view)
    assert report.ok, [str(f) for f in report.findings]


def test_a_run_for_one_tenant_leaves_the_others_alone(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    make_traffic(gw, admin, ledger, view)
    beta_before = admin.ok("GET", "/admin/tenants/beta")["balance"]
    result = plan(ledger, book_of("double-mini", DOUBLE_MINI), *today_window(), tenant="acme", prices=DOUBLE_MINI)
    assert {line["tenant"] for line in result.report()["lines"]} == {"acme"}
    apply(ledger, result)
    caught_up(ledger, view)
    assert admin.ok("GET", "/admin/tenants/beta")["balance"] == beta_before
    assert verify(ledger, base_price_book(), view).ok

