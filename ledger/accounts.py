"""Double-entry bookkeeping: which ledger events move money, and between which accounts.

Every tenant has an account `tenant:<name>` whose balance is what it may still
spend. Money enters it from `system:credits` (credits bought), leaves it to
`system:revenue` (usage charged), and moves either way with `system:adjustments`
(corrections). Every movement is two entries of opposite sign carrying the id of
the event that caused it, so the entries of all accounts always sum to zero and a
tenant's balance is the sum of its account's entries.

| event                      | tenant account | counter-account      |
|----------------------------|----------------|----------------------|
| Tenant.CreditsAdded        | +amount        | system:credits       |
| Tenant.BalanceAdjusted     | +amount (signed)| system:adjustments  |
| Request.UsageMetered       | -cost          | system:revenue       |

A usage charge whose request has no `Received` event (no tenant to charge) goes to
`system:unattributed` instead of a tenant. Zero amounts make no entries.

`postings()` is the rule; the SQL projection (ledger/projections) applies it
incrementally, and `replay_balances()` applies it from scratch by reading every
event, which is how projected balances are checked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from ledger.events import Request, Tenant
from ledger.pricing import quantize

CREDITS = "system:credits"
REVENUE = "system:revenue"
ADJUSTMENTS = "system:adjustments"
UNATTRIBUTED = "system:unattributed"
ZERO = Decimal(0)

# The events that move money, and the events needed to know whose money it is.
MONEY_TOPICS = tuple(
    get_topic(cls)
    for cls in (Tenant.Created, Tenant.CreditsAdded, Tenant.BalanceAdjusted, Request.Received, Request.UsageMetered)
)


MAX_AMOUNT = Decimal(10) ** 15  # USD; larger amounts are refused as typos


def money_text(amount: Decimal) -> str:
    """USD as a fixed-point string with the ledger's nine decimals ("0.000000001",
    never "1E-9")."""
    return format(quantize(amount), "f")


def tenant_account(tenant: str) -> str:
    return "tenant:" + tenant


def event_id(event: Any) -> str:
    """A stable id for one event: its aggregate's id and its version in it."""
    return f"{event.originator_id}/{event.originator_version}"


def postings(event: Any, tenant: str | None) -> list[tuple[str, Decimal, str, str]]:
    """(account, amount, kind, reference) entries of one event; `tenant` is the
    tenant the event concerns (for usage: the request's tenant, None if unknown)."""
    if isinstance(event, Tenant.CreditsAdded):
        amount = Decimal(event.amount)
        pair = [(tenant_account(tenant or ""), amount), (CREDITS, -amount)]
        kind, reference = "credit", event.reference
    elif isinstance(event, Tenant.BalanceAdjusted):
        amount = Decimal(event.amount)
        pair = [(tenant_account(tenant or ""), amount), (ADJUSTMENTS, -amount)]
        kind, reference = "adjustment", event.corrects or event.reason
    elif isinstance(event, Request.UsageMetered):
        amount = Decimal(event.cost)
        payer = tenant_account(tenant) if tenant is not None else UNATTRIBUTED
        pair = [(payer, -amount), (REVENUE, amount)]
        kind, reference = "usage", "req_" + _hex(event.originator_id)
    else:
        return []
    if amount == ZERO:
        return []
    return [(account, value, kind, reference) for account, value in pair]


def replay_balances(ledger: Any, page: int = 2000) -> dict[str, Decimal]:
    """Every account's balance, recomputed by reading the ledger's events from the
    first: independent of any projection."""
    balances: dict[str, Decimal] = defaultdict(Decimal)
    tenants: dict[UUID, str] = {}
    requests: dict[UUID, str] = {}
    for event in _events(ledger, page):
        tenant: str | None = None
        if isinstance(event, Tenant.Created):
            tenants[event.originator_id] = event.name
            continue
        if isinstance(event, Request.Received):
            requests[event.originator_id] = event.tenant
            continue
        if isinstance(event, Tenant.CreditsAdded | Tenant.BalanceAdjusted):
            tenant = tenants.get(event.originator_id, "")
        elif isinstance(event, Request.UsageMetered):
            tenant = requests.get(event.originator_id)
        for account, amount, _, _ in postings(event, tenant):
            balances[account] += amount
    return dict(balances)


def _events(ledger: Any, page: int) -> Iterator[Any]:
    start = 0
    while True:
        notifications = ledger.recorder.select_notifications(
            start=start, limit=page, topics=MONEY_TOPICS, inclusive_of_start=False
        )
        for notification in notifications:
            yield ledger.mapper.to_domain_event(notification)
        if len(notifications) < page:
            return
        start = notifications[-1].id


def _hex(value: Any) -> str:
    return value.hex if isinstance(value, UUID) else str(value).replace("-", "")
