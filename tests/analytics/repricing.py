"""Re-pricing runs recorded straight into a ledger, as the re-pricing engine records
them (one `RepricingRun` with `UsageRepriced` per tenant, key, model and day, and one
`BalanceAdjusted` per tenant correcting `reprice:<run id>`, in one transaction), and
the costs analytics must then show, computed here from the ledger's own events,
independently of the analytics code."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from ledger.accounts import event_id, money_text
from ledger.application import Ledger
from ledger.events import RepricingRun, Request
from ledger.pricing import quantize


@dataclass(frozen=True, slots=True)
class Usage:
    """One UsageMetered event and where its request's row sits."""

    event_id: str  # "<request uuid>/<version>"
    request: UUID
    tenant: str
    key_id: str
    provider: str
    model: str
    received: datetime  # the request's time: its row's bucket
    metered: datetime  # the usage event's time: the day a re-pricing run names
    cost: Decimal  # as currently priced (after any earlier runs)


def usage_events(ledger: Ledger) -> list[Usage]:
    """Every UsageMetered of the ledger with its request's Received."""
    received: dict[UUID, Request.Received] = {}
    usages: list[Usage] = []
    start = 0
    while True:
        page = ledger.recorder.select_notifications(start, 1000, inclusive_of_start=False)
        for notification in page:
            event = ledger.mapper.to_domain_event(notification)
            if isinstance(event, Request.Received):
                received[event.originator_id] = event
            elif isinstance(event, Request.UsageMetered):
                first = received[event.originator_id]
                usages.append(Usage(event_id(event), event.originator_id, first.tenant, first.key_id,
                                    event.provider, event.model, first.timestamp.astimezone(UTC),
                                    event.timestamp.astimezone(UTC), Decimal(event.cost)))
        if len(page) < 1000:
            return usages
        start = page[-1].id


def record_run(ledger: Ledger, run_id: str, usages: list[Usage], new_cost: Callable[[int, Usage], Decimal],
               adjust: bool = True) -> list[Usage]:
    """Re-price `usages` (new cost per usage; unchanged ones are left out, as the
    engine does) in one run, saved in one transaction; the usages as re-priced."""
    groups: dict[tuple[str, str, str, str], list[list[str]]] = defaultdict(list)
    repriced: list[Usage] = []
    deltas: dict[str, Decimal] = defaultdict(Decimal)
    for i, usage in enumerate(usages):
        after = quantize(new_cost(i, usage))
        if after != usage.cost:
            day = usage.metered.date().isoformat()
            groups[(usage.tenant, usage.key_id, usage.model, day)].append(
                [usage.event_id, money_text(usage.cost), money_text(after)])
            deltas[usage.tenant] += after - usage.cost
        repriced.append(_with_cost(usage, after))
    run = RepricingRun(run_id=run_id, price_book="test-v2", prices=None, window_from="2000-01-01T00:00:00+00:00",
                       window_to="2999-01-01T00:00:00+00:00", tenant=None)
    for (tenant, key_id, model, day), corrections in sorted(groups.items()):
        old = sum((Decimal(c[1]) for c in corrections), Decimal(0))
        new = sum((Decimal(c[2]) for c in corrections), Decimal(0))
        run.reprice(run_id=run_id, tenant=tenant, key_id=key_id, model=model, day=day, price_book="test-v2",
                    corrections=corrections, old_cost=money_text(old), new_cost=money_text(new))
    run.finish(events=sum(len(c) for c in groups.values()), deltas={t: money_text(d) for t, d in deltas.items()})
    aggregates: list[object] = [run]
    if adjust:
        for tenant, delta in sorted(deltas.items()):
            if delta:
                account = ledger.find_tenant(tenant)
                assert account is not None
                account.adjust_balance(amount=money_text(-delta), reason=f"re-priced by run {run_id}",
                                       corrects=f"reprice:{run_id}")
                aggregates.append(account)
    ledger.save(*aggregates)
    return repriced


def _with_cost(usage: Usage, cost: Decimal) -> Usage:
    return Usage(usage.event_id, usage.request, usage.tenant, usage.key_id, usage.provider, usage.model,
                 usage.received, usage.metered, cost)


def hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0, tzinfo=None)


def costs_by(usages: list[Usage], key: Callable[[Usage], object]) -> dict[object, Decimal]:
    """Cost summed by `key`; zero sums kept (a bucket whose cost re-pricing zeroed still has requests)."""
    sums: dict[object, Decimal] = defaultdict(Decimal)
    for usage in usages:
        sums[key(usage)] += usage.cost
    return dict(sums)
