"""The check before a request is routed: may this key, of this tenant, make it now?

In order, each failure answered at once:
1. the tenant is active (suspended -> 403 `permission_denied`);
2. every model the request names is among the key's allowed models, if it has a
   list (else 403 `permission_denied`);
3. the rate limits of the key and of the tenant (gateway/limits.py; 429
   `rate_limited` with `retry-after`); the `x-ratelimit-*` headers go on every
   response from here on;
4. the balance is above zero and the month's spend is under the monthly cap (else
   402 `insufficient_balance`). Fail closed: when the balance cannot be known, the
   answer is 503, never a free request.

The tenant's state (status, limits, balance, month's spend, provider keys) is read
from the tenancy projection at most once a second per tenant and process, never
per request. The balance used is the projected one minus what this process has
charged since (charges the projection has not applied yet), so within one process
the only overspend is the cost of requests already admitted when the balance
crossed zero. Across processes, add what the others spent within the projection
lag plus one cache period (docs/billing.md has the bound and its test).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog

from gateway.errors import GatewayError
from gateway.limits import Bucket, RateLimiter
from gateway.routing_options import RoutingDefaults, stored_options
from ledger.credentials import CredentialCipher, CredentialError, MasterKeyError

if TYPE_CHECKING:
    from adapters.catalog import Catalog
    from gateway.auth import Principal
    from ledger.application import Ledger
    from ledger.projections.views import TenancyView

log = structlog.get_logger("gateway.admission")

ZERO = Decimal(0)
STALE_MAX_S = 10.0  # if the projection cannot be read, a state this old may still be used
PENDING_MAX_AGE_S = 120.0  # local charges older than this are assumed projected
CATCH_UP_WAIT_S = 2.0  # how long to wait for the projection to learn of a new tenant
SLOW_READ_S = 0.25  # a read of the projection taking longer than this is trouble: use the last state

# The tenant's own provider keys for the request being served (read by Services.target).
PROVIDER_KEYS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "twoapi_provider_keys", default=None
)


@dataclass(slots=True)
class TenantState:
    status: str
    rpm: int | None
    tpm: int | None
    monthly_cap: Decimal | None
    balance: Decimal
    month: str
    month_spend: Decimal
    last_event_at: float  # unix time of the latest charge the projection applied
    provider_keys: dict[str, str]
    loaded: float  # monotonic
    routing: dict[str, Any] | None = None  # the tenant's routing defaults (Tenant.RoutingSet), as options


@dataclass(slots=True)
class _Tenant:
    state: TenantState | None = None
    loading: asyncio.Future[TenantState] | None = None
    loading_since: float = 0.0
    failing: bool = False
    generation: int = 0  # bumped by invalidate(): a read begun before it is already old
    pending: deque[tuple[float, Decimal]] = field(default_factory=deque)  # (event time, cost)
    pending_total: Decimal = ZERO


@dataclass(slots=True)
class Admission:
    """What the rest of the request needs from its admission."""

    gate: Gate
    tenant: str
    at: float  # unix time the request was admitted: prices in force then apply
    token_buckets: list[Bucket]
    token_estimate: int
    headers: dict[str, str]
    routing: RoutingDefaults | None = None  # the key's and the tenant's routing defaults

    def metered(self, cost: Decimal, tokens: int, event_at: float) -> None:
        """The request's usage is known: charge it locally and settle token limits."""
        self.gate.charged(self.tenant, event_at, cost)
        if self.token_buckets:
            self.gate.limiter.settle([(b, tokens - self.token_estimate) for b in self.token_buckets])
            self.token_estimate = tokens


class Gate:
    def __init__(self, view: TenancyView, ledger: Ledger, limiter: RateLimiter, catalog: Catalog,
                 master_key: str | None, ttl_s: float = 1.0) -> None:
        self.view = view
        self.ledger = ledger
        self.limiter = limiter
        self.catalog = catalog
        self.ttl_s = ttl_s
        self._master_key = master_key
        self._cipher: CredentialCipher | None = None
        self._tenants: dict[str, _Tenant] = {}

    # -- tenant state, cached --------------------------------------------------------

    async def state(self, tenant: str) -> TenantState:
        """The tenant's state, at most `ttl_s` old. A tenant in use is refreshed in the
        background from half its age, so requests do not wait for the read. While the
        projection's store fails (or a read hangs), the last state answers for up to
        STALE_MAX_S (nothing can be committed then anyway); after that, 503."""
        entry = self._tenants.get(tenant)
        if entry is None:
            entry = self._tenants[tenant] = _Tenant()
        now = time.monotonic()
        state = entry.state
        if state is not None:
            age = now - state.loaded
            if age < self.ttl_s:
                if age > self.ttl_s / 2:
                    self._refresh_soon(tenant, entry)
                return state
            troubled = entry.failing or (entry.loading is not None and now - entry.loading_since > SLOW_READ_S)
            if troubled and age < STALE_MAX_S:
                self._refresh_soon(tenant, entry)
                return state
        self._refresh_soon(tenant, entry)
        assert entry.loading is not None
        return await asyncio.shield(entry.loading)

    def _refresh_soon(self, tenant: str, entry: _Tenant) -> None:
        if entry.loading is None:  # one read per tenant at a time
            entry.loading_since = time.monotonic()
            entry.loading = asyncio.ensure_future(self._refresh(tenant, entry))
            entry.loading.add_done_callback(_retrieve)

    async def _refresh(self, tenant: str, entry: _Tenant) -> TenantState:
        generation = entry.generation
        try:
            try:
                state = await asyncio.to_thread(self._load, tenant)
            except Exception as error:
                entry.failing = True
                stale = entry.state
                usable = stale is not None and time.monotonic() - stale.loaded < STALE_MAX_S
                log.warning("tenant_state_unavailable", tenant=tenant, error=type(error).__name__, using_stale=usable)
                if usable:
                    assert stale is not None
                    return stale
                raise _unavailable() from None
            entry.failing = False
            if state is None:
                raise GatewayError("ledger_unavailable",
                                   f"The account of tenant {tenant} is not known yet; retry in a moment.")
            self._prune(entry, state)
            if generation != entry.generation:
                state.loaded = float("-inf")  # read before an admin change here: serve it once, read again
            entry.state = state
            return state
        finally:
            entry.loading = None

    def _load(self, tenant: str) -> TenantState | None:
        from ledger.projections.runner import wait_caught_up

        row = self.view.tenant_state(tenant, _month())
        if row is None and wait_caught_up(self.ledger, self.view, timeout=CATCH_UP_WAIT_S):
            row = self.view.tenant_state(tenant, _month())
        if row is None:
            return None
        keys = {}
        for provider, ciphertext in row["credentials"].items():
            keys[provider] = self._decrypt(tenant, provider, ciphertext)
        last = row["last_event_at"]
        return TenantState(
            status=row["status"], rpm=row["rpm"], tpm=row["tpm"], monthly_cap=row["monthly_cap"],
            balance=row["balance"], month=_month(), month_spend=row["month_spend"],
            last_event_at=last.timestamp() if last is not None else 0.0, provider_keys=keys,
            loaded=time.monotonic(), routing=stored_options(row.get("routing")),
        )

    def _decrypt(self, tenant: str, provider: str, ciphertext: str) -> str:
        try:
            if self._cipher is None:
                self._cipher = CredentialCipher.from_env(self._master_key)
            return self._cipher.open(tenant, provider, ciphertext)
        except (MasterKeyError, CredentialError) as error:
            # Fail closed: never fall back to the gateway's own key for this tenant.
            log.error("provider_key_unusable", tenant=tenant, provider=provider, error=type(error).__name__)
            raise

    def invalidate(self, tenant: str) -> None:
        """Forget the tenant's state (an admin changed it here): the next request reads it."""
        entry = self._tenants.get(tenant)
        if entry is not None:
            entry.generation += 1
            if entry.state is not None:
                entry.state.loaded = float("-inf")  # too old to answer from: the next request reads

    # -- local charges not yet projected ---------------------------------------------

    def charged(self, tenant: str, event_at: float, cost: Decimal) -> None:
        if not cost:
            return
        entry = self._tenants.get(tenant)
        if entry is None:
            entry = self._tenants[tenant] = _Tenant()
        entry.pending.append((event_at, cost))
        entry.pending_total += cost

    def _prune(self, entry: _Tenant, state: TenantState) -> None:
        # Charges up to the projection's latest applied charge time are in its
        # balance (it applies events in commit order); drop very old ones regardless.
        horizon = max(state.last_event_at + 1e-6, time.time() - PENDING_MAX_AGE_S)
        pending = entry.pending
        while pending and pending[0][0] <= horizon:  # charges are appended in time order
            entry.pending_total -= pending.popleft()[1]
        if not pending:
            entry.pending_total = ZERO

    def available(self, tenant: str, state: TenantState) -> tuple[Decimal, Decimal]:
        """(balance, month's spend) including this process's unprojected charges."""
        entry = self._tenants.get(tenant)
        unprojected = entry.pending_total if entry else ZERO
        spend = state.month_spend + unprojected if state.month == _month() else unprojected
        return state.balance - unprojected, spend


async def admit(services: Any, call: Any, body: dict[str, Any]) -> Admission:
    """Admit the request or raise the GatewayError that refuses it (see the module doc)."""
    gate: Gate = services.gate
    principal: Principal = call.principal
    tenant = principal.tenant
    state = await gate.state(tenant)
    PROVIDER_KEYS.set(state.provider_keys or None)
    if state.status != "active":
        raise GatewayError("permission_denied", f"Tenant {tenant} is suspended; its keys cannot make requests.")
    _check_models(gate.catalog, principal.allowed_models, body)

    estimate = _estimate_tokens(body)
    buckets: list[Bucket] = []
    for scope, ident, rpm, tpm in (("key", principal.key_id, principal.rpm, principal.tpm),
                                    ("tenant", tenant, state.rpm, state.tpm)):
        if rpm:
            buckets.append(Bucket(f"{scope}:{ident}:requests", "requests", rpm, 1))
        if tpm:
            buckets.append(Bucket(f"{scope}:{ident}:tokens", "tokens", tpm, estimate))
    decision = await gate.limiter.take(buckets)
    admission = Admission(gate, tenant, time.time(), [b for b in buckets if b.kind == "tokens"], estimate,
                          decision.headers(), RoutingDefaults((("key", getattr(principal, "routing", None)),
                                                               ("tenant", state.routing)), principal.allowed_models))
    call.admission = admission
    if not decision.allowed:
        kinds = sorted({s.bucket.kind for s in decision.states if s.remaining <= 0} or {"requests"})
        raise GatewayError("rate_limited",
                           f"Rate limit reached for {' and '.join(kinds)} per minute; retry after "
                           f"{admission.headers['retry-after']}s.", headers=admission.headers)

    balance, spend = gate.available(tenant, state)
    if balance <= ZERO:
        raise GatewayError("insufficient_balance",
                           f"Tenant {tenant} has no balance left ({balance} USD); add credits to continue.")
    if state.monthly_cap is not None and spend >= state.monthly_cap:
        raise GatewayError("insufficient_balance",
                           f"Tenant {tenant} reached its monthly spend cap of {state.monthly_cap} USD "
                           f"({spend} USD spent in {state.month}).")
    return admission


def _check_models(catalog: Catalog, allowed: tuple[str, ...] | None, body: dict[str, Any]) -> None:
    if allowed is None:
        return
    permitted = {_canonical(catalog, name) for name in allowed}
    routing = body.get("routing") if isinstance(body.get("routing"), dict) else {}
    named = [body.get("model"), *(body.get("models") or ()), *(routing.get("fallbacks") or ())]
    names = [n for n in named if isinstance(n, str)]
    if "auto" in names and not body.get("models"):
        raise GatewayError("permission_denied",
                           "This key may use only some models: with model 'auto', list them in 'models'.",
                           param="model")
    for name in names:
        if name != "auto" and _canonical(catalog, name) not in permitted:
            raise GatewayError("permission_denied", f"This key may not use the model {name}.", param="model")


def _canonical(catalog: Catalog, name: str) -> str:
    model = catalog.find(name)
    return model.id if model is not None else name


def _estimate_tokens(body: dict[str, Any]) -> int:
    chars = 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return chars // 4 + 4 * (len(messages) if isinstance(messages, list) else 0) + 1


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


_month_seen: tuple[int, str] = (-1, "")


def _month() -> str:
    """The current UTC month, "YYYY-MM" (asked several times per request: the text is
    remembered for the second it was made in)."""
    global _month_seen
    second = int(time.time())
    seen = _month_seen
    if seen[0] == second:
        return seen[1]
    now = datetime.fromtimestamp(second, UTC)
    text = f"{now.year:04d}-{now.month:02d}"
    _month_seen = (second, text)
    return text


def _unavailable() -> GatewayError:
    return GatewayError("ledger_unavailable",
                        "The tenant's balance cannot be read right now, so the request was not served; retry later.")


# -- wiring: what Services starts and stops for tenancy --------------------------------


PRICE_REFRESH_S = 1.0


async def start_tenancy(services: Any) -> None:
    """Open the projection's tables, start the projection worker (unless
    TWOAPI_PROJECTIONS=off: then another process runs it), the rate limiter, the
    admission gate and the price-book refresher."""
    from ledger.projections.runner import ProjectionWorker, open_view

    settings = services.settings
    services.view = await asyncio.to_thread(open_view, settings.database_url, settings.data_dir)
    services.projection = None
    if settings.projections == "thread":
        services.projection = ProjectionWorker(settings.database_url, settings.data_dir).start()
    services.limiter = RateLimiter(settings.redis_url, prefix=settings.redis_prefix,
                                   lease_share=settings.rate_lease_share)
    await services.limiter.start()
    services.gate = Gate(services.view, services.ledger, services.limiter, services.catalog, settings.master_key)
    await asyncio.to_thread(services.price_books.refresh, services.ledger)
    services.price_refresher = asyncio.get_running_loop().create_task(_refresh_prices(services))


async def stop_tenancy(services: Any) -> None:
    from ledger.projections.runner import close_view

    refresher = getattr(services, "price_refresher", None)
    if refresher is not None:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
    if getattr(services, "limiter", None) is not None:
        await services.limiter.stop()
    if getattr(services, "projection", None) is not None:
        await asyncio.to_thread(services.projection.stop)
    if getattr(services, "view", None) is not None:
        close_view(services.view)
    # Last of all (the writer has committed and stopped): the ledger's connections.
    if getattr(services, "ledger", None) is not None:
        with contextlib.suppress(Exception):
            services.ledger.close()


async def _refresh_prices(services: Any) -> None:
    while True:
        await asyncio.sleep(PRICE_REFRESH_S)
        try:
            await asyncio.to_thread(services.price_books.refresh, services.ledger)
        except Exception as error:  # the ledger is down: keep the versions known
            log.warning("price_books_refresh_failed", error=type(error).__name__)
