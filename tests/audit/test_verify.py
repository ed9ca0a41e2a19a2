"""`ledger verify`: the derived figures recomputed from the events, tamper evidence and
invariants, on SQLite and PostgreSQL."""

from __future__ import annotations

from gateway.price_list import base_price_book
from ledger.audit.seal import seal_pending
from ledger.audit.verify import verify
from tests.audit.traffic import make_traffic


def test_a_ledger_with_traffic_verifies_clean_and_sealed(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    make_traffic(gw, admin, ledger, view)
    seal_pending(ledger, max_events=17)  # beside the gateway's own sealing
    admin.credits("acme", "1.00", "after the first seals")
    seal_pending(ledger)  # one more seal at least, chained to those before
    report = verify(ledger, base_price_book(), view)
    assert report.ok, [str(f) for f in report.findings]
    assert report.seals >= 2  # chained (how many depends on whether the gateway sealed first)
    assert report.unsealed == 1 and report.sealed == report.events - 1  # all but the newest seal itself
    assert report.requests == 6 and report.usage_events == 6
