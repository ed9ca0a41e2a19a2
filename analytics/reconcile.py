"""Reconciliation: a tenant's totals recomputed from the ledger, beside the analytics.

The ledger side reads the events themselves (every `Received` to know whose request
it is, every `UsageMetered` for tokens and cost, every `UsageRepriced` for the cost
re-pricing corrected, the tenant's credit events), so it depends on no projection.
It is a full read of the money events: an audit action, not something a dashboard
polls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from analytics.rows import decode
from ledger import ids
from ledger.application import Ledger
from ledger.events import RepricingRun, Request

ZERO = Decimal(0)
TOPICS = [get_topic(Request.Received), get_topic(Request.UsageMetered), get_topic(RepricingRun.UsageRepriced)]


@dataclass(slots=True)
class Totals:
    requests: int = 0  # requests received (each has one Received event)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal = ZERO  # as re-priced: metered cost plus the corrections of re-pricing runs
    credits: Decimal = ZERO
    adjustments: Decimal = ZERO  # every BalanceAdjusted, those of re-pricing runs included
    repriced: Decimal = ZERO  # what re-pricing runs changed the cost by (included in `cost`)

    @property
    def balance(self) -> Decimal:
        # The ledger's rule (ledger/accounts.py): usage is charged as metered, and a
        # re-pricing run moves the balance by its own BalanceAdjusted.
        return self.credits + self.adjustments - (self.cost - self.repriced)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "balance": self.balance}


def ledger_totals(ledger: Ledger, tenant: str, up_to: int | None = None, page: int = 5000) -> Totals:
    """The tenant's totals from the ledger's events (up to notification `up_to`)."""
    totals = Totals()
    mine: set[UUID] = set()
    for event in _notifications(ledger, TOPICS, up_to, page):
        if event.name == "Received":
            if event.fields.get("tenant") == tenant:
                mine.add(event.originator_id)
                totals.requests += 1
        elif event.name == "UsageRepriced":
            for usage_event, before, after in event.fields.get("corrections") or []:
                if UUID(usage_event.partition("/")[0]) in mine:
                    delta = Decimal(after) - Decimal(before)
                    totals.cost += delta
                    totals.repriced += delta
        elif event.originator_id in mine:  # UsageMetered of one of the tenant's requests
            f = event.fields
            totals.cost += Decimal(f["cost"])
            totals.input_tokens += int(f["input_tokens"])
            totals.output_tokens += int(f["output_tokens"])
            totals.cached_tokens += int(f["cached_tokens"])
    for stored in ledger.recorder.select_events(ids.tenant_id(tenant)):
        event = decode(stored, ledger.mapper)
        if event.name == "CreditsAdded":
            totals.credits += Decimal(event.fields["amount"])
        elif event.name == "BalanceAdjusted":  # signed
            totals.adjustments += Decimal(event.fields["amount"])
    return totals


def _notifications(ledger: Ledger, topics: list[str], up_to: int | None, page: int) -> Iterator[Any]:
    start = 0
    while True:
        batch = ledger.recorder.select_notifications(start, page, stop=up_to, topics=topics, inclusive_of_start=False)
        for notification in batch:
            yield decode(notification, ledger.mapper)
        if len(batch) < page:
            return
        start = batch[-1].id
