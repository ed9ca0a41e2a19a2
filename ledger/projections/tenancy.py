"""The tenancy projection: tenants, keys, provider keys, money and usage, from events.

It follows the ledger's notification log (only the topics below) with the
eventsourcing projection machinery. Events are gathered into a batch of changes
(`views.Batch`) and the runner flushes the batch whenever the subscription has
nothing more at hand (or the batch is full): the batch's rows and the position of
its last event are committed together (see views.py), so a crash anywhere loses or
repeats nothing. Money movements follow ledger/accounts.py.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from ledger.accounts import event_id, postings
from ledger.events import ApiKey, ProviderCredential, RepricingRun, Request, Tenant
from ledger.projections.views import ZERO, AccountDelta, Batch, TenancyView, UsageDelta

PROJECTION_NAME = "tenancy"
MAX_BATCH_EVENTS = 1000
# Requests whose owner is remembered. A request's events are committed together, so its
# usage arrives in the same pull as its Received; an older one is read from the view.
# (200,000 held ~1 KB each: the projection process grew ~200 MB over its first
# 17 minutes at 200 req/s, which a soak reads as growth.)
_REQUEST_MEMORY = 10_000

TOPICS = tuple(
    get_topic(cls)
    for cls in (
        Tenant.Created, Tenant.CreditsAdded, Tenant.Suspended, Tenant.Reactivated, Tenant.LimitsSet,
        Tenant.BalanceAdjusted, Tenant.RoutingSet,
        ApiKey.Issued, ApiKey.Revoked, ApiKey.LimitsSet, ApiKey.RoutingSet,
        ProviderCredential.Stored, ProviderCredential.Replaced, ProviderCredential.Removed,
        Request.Received, Request.UsageMetered,
        RepricingRun.UsageRepriced,
    )
)


class TenancyProjection(Projection[TenancyView]):
    name = PROJECTION_NAME
    topics = TOPICS

    def __init__(self, view: TenancyView) -> None:
        super().__init__(view)
        self.position = view.position()
        self.batch = Batch(after=self.position)
        self._tenants: dict[UUID, str] = {}
        self._credentials: dict[UUID, tuple[str, str]] = {}
        self._requests: OrderedDict[UUID, tuple[str, str]] = OrderedDict()
        self.applied_events = 0
        self.batches = 0

    # -- the library's entry point: one event and its position -------------------

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        handler = _HANDLERS.get(type(domain_event))
        if handler is not None:
            handler(self, domain_event, tracking.notification_id)
        self.batch.events += 1
        self.batch.last = tracking

    def batch_full(self) -> bool:
        return self.batch.events >= MAX_BATCH_EVENTS

    def flush(self) -> None:
        """Commit the gathered changes with the position of the last event."""
        batch = self.batch
        if batch.last is None:
            return
        self.view.apply(batch)
        self.position = batch.last.notification_id
        self.applied_events += batch.events
        self.batches += 1
        self.batch = Batch(after=self.position)

    # -- handlers -------------------------------------------------------------------

    def _tenant_created(self, event: Tenant.Created, position: int) -> None:
        self._tenants[event.originator_id] = event.name
        self.batch.ops.append(("tenant_created", (event.name, event.originator_id.hex, event.timestamp)))

    def _tenant_status(self, event: Any, position: int) -> None:
        status = "suspended" if isinstance(event, Tenant.Suspended) else "active"
        self.batch.ops.append(("tenant_status", (event.originator_id.hex, status, event.reason, event.timestamp)))

    def _tenant_limits(self, event: Tenant.LimitsSet, position: int) -> None:
        self.batch.ops.append(
            ("tenant_limits", (event.originator_id.hex, event.rpm, event.tpm, event.monthly_cap, event.timestamp))
        )

    def _money(self, event: Any, position: int) -> None:
        tenant = self._tenant_of(event.originator_id)
        self._post(event, position, tenant)

    def _key_issued(self, event: ApiKey.Issued, position: int) -> None:
        self.batch.ops.append(("key_issued", (event.originator_id.hex, event.key_hash, event.tenant, event.prefix,
                                              event.label, event.timestamp)))

    def _key_revoked(self, event: ApiKey.Revoked, position: int) -> None:
        self.batch.ops.append(("key_revoked", (event.originator_id.hex, event.timestamp)))

    def _key_limits(self, event: ApiKey.LimitsSet, position: int) -> None:
        self.batch.ops.append(("key_limits", (event.originator_id.hex, event.rpm, event.tpm, event.allowed_models)))

    def _routing(self, event: Tenant.RoutingSet | ApiKey.RoutingSet, position: int) -> None:
        kind = "tenant" if isinstance(event, Tenant.RoutingSet) else "key"
        defaults = {"strategy": event.strategy, "fallbacks": event.fallbacks, "max_attempts": event.max_attempts,
                    "timeout_ms": event.timeout_ms, "max_cost": event.max_cost}
        self.batch.ops.append(("routing", (kind, event.originator_id.hex, defaults)))

    def _credential_stored(self, event: ProviderCredential.Stored, position: int) -> None:
        self._credentials[event.originator_id] = (event.tenant, event.provider)
        self.batch.ops.append(("credential_set", (event.originator_id.hex, event.tenant, event.provider,
                                                  event.ciphertext, event.timestamp)))

    def _credential_replaced(self, event: ProviderCredential.Replaced, position: int) -> None:
        owner = self._credentials.get(event.originator_id) or self.view.credential_owner(event.originator_id.hex)
        if owner is None:
            return
        self._credentials[event.originator_id] = owner
        self.batch.ops.append(("credential_set", (event.originator_id.hex, *owner, event.ciphertext,
                                                  event.timestamp)))

    def _credential_removed(self, event: ProviderCredential.Removed, position: int) -> None:
        self.batch.ops.append(("credential_removed", (event.originator_id.hex,)))

    def _received(self, event: Request.Received, position: int) -> None:
        self._remember(event.originator_id, (event.tenant, event.key_id))
        self.batch.requests.append((event.originator_id.hex, event.tenant, event.key_id, event.timestamp))
        last = self.batch.last_used.get(event.key_id)
        if last is None or event.timestamp > last:
            self.batch.last_used[event.key_id] = event.timestamp

    def _usage(self, event: Request.UsageMetered, position: int) -> None:
        owner = self._requests.get(event.originator_id) or self.view.request_owner(event.originator_id.hex)
        tenant = owner[0] if owner else None
        self._post(event, position, tenant)
        if owner is None:
            return
        day = event.timestamp.date()
        usage = self.batch.usage.setdefault((owner[0], day, owner[1], event.model), UsageDelta())
        cost = Decimal(event.cost)
        usage.requests += 1
        usage.input_tokens += event.input_tokens
        usage.output_tokens += event.output_tokens
        usage.cached_tokens += event.cached_tokens
        usage.estimated += event.source == "estimated"
        usage.cost += cost
        month = event.timestamp.strftime("%Y-%m")
        self.batch.spend[(owner[0], month)] = self.batch.spend.get((owner[0], month), ZERO) + cost

    def _repriced(self, event: RepricingRun.UsageRepriced, position: int) -> None:
        # Usage totals follow a re-pricing run; the balance follows its BalanceAdjusted.
        delta = Decimal(event.new_cost) - Decimal(event.old_cost)
        day = date.fromisoformat(event.day)
        usage = self.batch.usage.setdefault((event.tenant, day, event.key_id, event.model), UsageDelta())
        usage.cost += delta
        month = event.day[:7]
        self.batch.spend[(event.tenant, month)] = self.batch.spend.get((event.tenant, month), ZERO) + delta

    # -- helpers --------------------------------------------------------------------

    def _post(self, event: Any, position: int, tenant: str | None) -> None:
        eid = event_id(event)
        for account, amount, kind, reference in postings(event, tenant):
            owner = account.removeprefix("tenant:") if account.startswith("tenant:") else None
            self.batch.entries.append((eid, position, account, owner, amount, kind, reference, event.timestamp))
            delta = self.batch.accounts.get(account)
            if delta is None:
                delta = self.batch.accounts[account] = AccountDelta(tenant=owner)
            delta.amount += amount
            delta.entries += 1
            delta.position = position
            if delta.last_event_at is None or event.timestamp > delta.last_event_at:
                delta.last_event_at = event.timestamp

    def _tenant_of(self, tenant_id: UUID) -> str:
        name = self._tenants.get(tenant_id)
        if name is None:
            name = self.view.tenant_name(tenant_id.hex) or ""
            self._tenants[tenant_id] = name
        return name

    def _remember(self, request_id: UUID, owner: tuple[str, str]) -> None:
        self._requests[request_id] = owner
        if len(self._requests) > _REQUEST_MEMORY:
            self._requests.popitem(last=False)


_HANDLERS = {
    Tenant.Created: TenancyProjection._tenant_created,
    Tenant.Suspended: TenancyProjection._tenant_status,
    Tenant.Reactivated: TenancyProjection._tenant_status,
    Tenant.LimitsSet: TenancyProjection._tenant_limits,
    Tenant.CreditsAdded: TenancyProjection._money,
    Tenant.BalanceAdjusted: TenancyProjection._money,
    Tenant.RoutingSet: TenancyProjection._routing,
    ApiKey.Issued: TenancyProjection._key_issued,
    ApiKey.Revoked: TenancyProjection._key_revoked,
    ApiKey.LimitsSet: TenancyProjection._key_limits,
    ApiKey.RoutingSet: TenancyProjection._routing,
    ProviderCredential.Stored: TenancyProjection._credential_stored,
    ProviderCredential.Replaced: TenancyProjection._credential_replaced,
    ProviderCredential.Removed: TenancyProjection._credential_removed,
    Request.Received: TenancyProjection._received,
    Request.UsageMetered: TenancyProjection._usage,
    RepricingRun.UsageRepriced: TenancyProjection._repriced,
}
