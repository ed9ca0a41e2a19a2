"""First-run set-up for `serve --simulate`: a demo tenant with credits and a key."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ledger.application import Ledger, hash_key

DEMO_TENANT = "demo"
DEMO_CREDITS = Decimal("100.00")


@dataclass(frozen=True, slots=True)
class DemoAccess:
    key: str | None  # None when the ledger already had data and no demo key was given
    created: bool


def ensure_demo_tenant(ledger: Ledger, demo_key: str | None) -> DemoAccess:
    """On an empty ledger, create tenant `demo` with credits and issue a key (the
    `TWOAPI_DEMO_KEY` when set, so scripts know it). A given demo key is issued on a
    non-empty ledger too, once."""
    empty = ledger.is_empty()
    if not empty and (demo_key is None or ledger.find_key(hash_key(demo_key)) is not None):
        return DemoAccess(key=demo_key, created=False)
    if ledger.find_tenant(DEMO_TENANT) is None:
        ledger.create_tenant(DEMO_TENANT)
        ledger.add_credits(DEMO_TENANT, DEMO_CREDITS, reference="demo welcome credits")
    issued = ledger.issue_key(DEMO_TENANT, label="demo", secret=demo_key)
    return DemoAccess(key=issued.secret, created=True)
