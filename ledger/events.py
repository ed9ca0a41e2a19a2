"""The aggregates and their events: the ledger's vocabulary.

Events hold only JSON primitives (money as exact decimal strings), so the orjson
transcoder can store them without type tags. No prompt or completion text, and no
secrets, ever appear in an event: requests carry hashes and sizes only.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger import ids

# Fields every event carries that are bookkeeping rather than content.
ENVELOPE_FIELDS = ("originator_id", "originator_version", "timestamp", "originator_topic")


class Request(Aggregate):
    """One API request; its id is the request id returned in `x-request-id`."""

    class Received(Aggregate.Created):
        tenant: str
        key_id: str
        endpoint: str
        model: str  # as the client asked for it
        stream: bool
        body_bytes: int
        body_sha256: str
        messages: int

    class Routed(Aggregate.Event):
        strategy: str
        candidates: list[dict[str, Any]]  # each: provider, model, score, excluded (reason or None)
        chain: list[str]  # the model ids to try, in order
        reason: str
        # The routing options in force and where each came from:
        # {"strategy": {"value": "cost", "from": "key"}, ...}; from: request, key, tenant or config.
        options: dict[str, dict[str, Any]] | None = None

    class AttemptStarted(Aggregate.Event):
        attempt: int
        provider: str
        model: str

    class AttemptFailed(Aggregate.Event):
        attempt: int
        provider: str
        model: str
        error_code: str
        status: int | None
        retryable: bool
        latency_ms: float
        message: str

    class RetryScheduled(Aggregate.Event):
        """The attempt loop waits `delay_ms` before trying `model` again."""

        model: str
        delay_ms: float
        retry_after_ms: float | None  # what the provider asked for, if it did

    class AttemptSucceeded(Aggregate.Event):
        attempt: int
        provider: str
        model: str
        status: int
        ttft_ms: float | None
        latency_ms: float

    class CircuitOpened(Aggregate.Event):
        """This request's failure opened the model's circuit breaker."""

        model: str
        reason: str
        open_until: float  # unix seconds

    class CircuitClosed(Aggregate.Event):
        """This request's success, as a half-open probe, closed the model's circuit."""

        model: str
        reason: str

    class StreamSummarized(Aggregate.Event):
        chunks: int
        bytes: int
        ttft_ms: float | None
        duration_ms: float
        finish_reason: str | None
        client_disconnected: bool

    class UsageMetered(Aggregate.Event):
        provider: str
        model: str
        input_tokens: int
        output_tokens: int
        cached_tokens: int
        source: str  # "provider" or "estimated"
        price_book: str
        cost: str  # USD, Decimal string with a 1e-9 quantum
        images: int = 0  # images generated (images endpoint), billed per image

    class Completed(Aggregate.Event):
        status: int
        latency_ms: float

    class Failed(Aggregate.Event):
        status: int
        error_code: str
        message: str
        latency_ms: float

    def __init__(self, **fields: Any) -> None:
        # A Request is written once by the batched writer and read back only for
        # audit; it keeps no derived state, so construction is a no-op.
        pass


class Tenant(Aggregate):
    class Created(Aggregate.Created):
        name: str

    class CreditsAdded(Aggregate.Event):
        amount: str  # USD, Decimal string
        reference: str

    class Suspended(Aggregate.Event):
        reason: str

    class Reactivated(Aggregate.Event):
        reason: str

    class LimitsSet(Aggregate.Event):
        """The tenant's limits as a whole (None: no limit)."""

        rpm: int | None  # requests per minute, all keys together
        tpm: int | None  # tokens per minute, all keys together
        monthly_cap: str | None  # USD per calendar month (UTC), Decimal string

    class BalanceAdjusted(Aggregate.Event):
        """A correction to the balance (positive or negative), naming what it corrects."""

        amount: str  # USD, Decimal string, signed
        reason: str
        corrects: str  # what is corrected, e.g. a request id or an invoice; may be ""

    @staticmethod
    def create_id(name: str) -> UUID:
        return ids.tenant_id(name)

    def __init__(self, name: str) -> None:
        self.name = name
        self.credits_added: list[str] = []
        self.suspended = False
        self.rpm: int | None = None
        self.tpm: int | None = None
        self.monthly_cap: str | None = None

    @event(CreditsAdded)
    def add_credits(self, amount: str, reference: str) -> None:
        self.credits_added.append(amount)

    @event(Suspended)
    def suspend(self, reason: str) -> None:
        self.suspended = True

    @event(Reactivated)
    def reactivate(self, reason: str) -> None:
        self.suspended = False

    @event(LimitsSet)
    def set_limits(self, rpm: int | None, tpm: int | None, monthly_cap: str | None) -> None:
        self.rpm, self.tpm, self.monthly_cap = rpm, tpm, monthly_cap

    @event(BalanceAdjusted)
    def adjust_balance(self, amount: str, reason: str, corrects: str) -> None:
        pass

    class RoutingSet(Aggregate.Event):
        """The tenant's routing defaults as a whole (each None: inherit the gateway's);
        a request's own `routing` and its key's defaults come first."""

        strategy: str | None  # cost | latency | quality, for model "auto"
        fallbacks: list[str] | None  # model ids tried after an explicit model
        max_attempts: int | None
        timeout_ms: int | None
        max_cost: str | None  # USD, Decimal string (with strategy quality)

    @event(RoutingSet)
    def set_routing(self, strategy: str | None, fallbacks: list[str] | None, max_attempts: int | None,
                    timeout_ms: int | None, max_cost: str | None) -> None:
        self.routing = {"strategy": strategy, "fallbacks": fallbacks, "max_attempts": max_attempts,
                        "timeout_ms": timeout_ms, "max_cost": max_cost}


class ApiKey(Aggregate):
    """An issued key. Its aggregate id is derived from the key's hash, so a key is
    looked up by hash directly in the event store, across processes, without a
    separate index."""

    class Issued(Aggregate.Created):
        tenant: str
        key_hash: str  # sha256 hex of the secret
        prefix: str  # the first characters of the secret, for people to recognise it
        label: str

    class Revoked(Aggregate.Event):
        reason: str

    class LimitsSet(Aggregate.Event):
        """The key's own limits as a whole (None: no limit of its own)."""

        rpm: int | None
        tpm: int | None
        allowed_models: list[str] | None  # model ids; None: every model

    @staticmethod
    def create_id(key_hash: str, **_: object) -> UUID:
        return ids.api_key_id(key_hash)

    def __init__(self, tenant: str, key_hash: str, prefix: str, label: str) -> None:
        self.tenant = tenant
        self.key_hash = key_hash
        self.prefix = prefix
        self.label = label
        self.revoked = False
        self.rpm: int | None = None
        self.tpm: int | None = None
        self.allowed_models: list[str] | None = None

    @event(Revoked)
    def revoke(self, reason: str) -> None:
        self.revoked = True

    @event(LimitsSet)
    def set_limits(self, rpm: int | None, tpm: int | None, allowed_models: list[str] | None) -> None:
        self.rpm, self.tpm, self.allowed_models = rpm, tpm, allowed_models

    class RoutingSet(Aggregate.Event):
        """The key's routing defaults as a whole (each None: inherit its tenant's)."""

        strategy: str | None
        fallbacks: list[str] | None
        max_attempts: int | None
        timeout_ms: int | None
        max_cost: str | None

    @event(RoutingSet)
    def set_routing(self, strategy: str | None, fallbacks: list[str] | None, max_attempts: int | None,
                    timeout_ms: int | None, max_cost: str | None) -> None:
        self.routing = {"strategy": strategy, "fallbacks": fallbacks, "max_attempts": max_attempts,
                        "timeout_ms": timeout_ms, "max_cost": max_cost}


class PriceBook(Aggregate):
    """The price book: one aggregate whose events are its published versions.

    A version names its prices per model (USD per million tokens for `input`,
    `output`, `cached_input` and `embedding`; USD per image for `image`; all Decimal
    strings) and the time from which it is in force. Requests are priced by the
    version in force when they were received; `UsageMetered.price_book` names it.
    """

    class Created(Aggregate.Created):
        pass

    class Published(Aggregate.Event):
        version: str
        effective_at: str  # ISO 8601, UTC
        prices: dict[str, dict[str, str]]  # model id -> unit -> Decimal string
        note: str

    @staticmethod
    def create_id() -> UUID:
        return uuid5(ids.NAMESPACE, "price-book")

    def __init__(self) -> None:
        self.versions: list[str] = []

    @event(Published)
    def publish(self, version: str, effective_at: str, prices: dict[str, dict[str, str]], note: str) -> None:
        self.versions.append(version)


class ProviderCredential(Aggregate):
    """A tenant's own key for one provider (bring your own key), stored only as
    AES-GCM ciphertext under TWOAPI_MASTER_KEY (see ledger/credentials.py)."""

    class Stored(Aggregate.Created):
        tenant: str
        provider: str
        ciphertext: str  # base64(nonce || AES-GCM ciphertext+tag)

    class Replaced(Aggregate.Event):
        ciphertext: str

    class Removed(Aggregate.Event):
        reason: str

    @staticmethod
    def create_id(tenant: str, provider: str, **_: object) -> UUID:
        return uuid5(ids.NAMESPACE, f"provider-credential:{tenant}:{provider}")

    def __init__(self, tenant: str, provider: str, ciphertext: str) -> None:
        self.tenant = tenant
        self.provider = provider
        self.ciphertext: str | None = ciphertext

    @event(Replaced)
    def replace(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    @event(Removed)
    def remove(self, reason: str) -> None:
        self.ciphertext = None


class RepricingRun(Aggregate):
    """One applied re-pricing run (`twoapi reprice --apply`, ledger/repricing.py).

    Its id is derived from the run id, so a run is recorded at most once: applying
    the same run again finds it and changes nothing. The money moves by one
    `Tenant.BalanceAdjusted` per tenant (corrects `reprice:<run id>`), saved in the
    same transaction as the run's events.
    """

    class Started(Aggregate.Created):
        run_id: str
        price_book: str  # the version usage was re-priced with
        prices: dict[str, dict[str, str]] | None  # the table, when the book is not a published version
        window_from: str  # ISO 8601, UTC: usage metered at or after
        window_to: str  # ISO 8601, UTC: usage metered before
        tenant: str | None  # None: every tenant

    class UsageRepriced(Aggregate.Event):
        """New costs for some of one tenant's usage events of one key, model and day.

        `corrections` are [usage event id, cost before, cost after] (event ids as in
        ledger/accounts.event_id; costs as Decimal strings); only events whose cost
        changes are named. `old_cost` and `new_cost` are their sums.
        """

        run_id: str
        tenant: str
        key_id: str
        model: str
        day: str  # YYYY-MM-DD (UTC) of the usage corrected
        price_book: str
        corrections: list[list[str]]
        old_cost: str
        new_cost: str

    class Finished(Aggregate.Event):
        events: int  # usage events corrected
        deltas: dict[str, str]  # tenant -> new cost minus old cost (what the tenant is charged more)

    @staticmethod
    def create_id(run_id: str, **_: object) -> UUID:
        return uuid5(ids.NAMESPACE, "repricing-run:" + run_id)

    def __init__(self, run_id: str, price_book: str, prices: dict[str, dict[str, str]] | None,
                 window_from: str, window_to: str, tenant: str | None) -> None:
        self.run_id = run_id
        self.finished = False
        self.corrected = 0
        self.deltas: dict[str, str] = {}

    @event(UsageRepriced)
    def reprice(self, run_id: str, tenant: str, key_id: str, model: str, day: str, price_book: str,
                corrections: list[list[str]], old_cost: str, new_cost: str) -> None:
        pass

    @event(Finished)
    def finish(self, events: int, deltas: dict[str, str]) -> None:
        self.finished = True
        self.corrected = events
        self.deltas = deltas


class LedgerSeal(Aggregate):
    """The ledger's tamper evidence: a hash chain over consecutive ranges of stored
    events (ledger/audit/seal.py). Each `LedgerSealed` covers the events with
    notification ids in [first, last] as they were stored, and chains to the seal
    before it, so editing or deleting a sealed row, or a seal, breaks the chain."""

    class Created(Aggregate.Created):
        pass

    class LedgerSealed(Aggregate.Event):
        first: int  # notification id of the first event covered
        last: int  # notification id of the last event covered
        count: int  # events covered (ids may have gaps: rolled-back inserts)
        positions: list[int]  # the notification ids covered
        leaves: str  # per event, the first 16 hex digits of its digest, concatenated
        digest: str  # sha256 hex over the full digests of the events covered, in order
        previous: str  # the chain hash of the seal before ("" for the first)
        chain: str  # sha256 hex of previous, range and digest

    @staticmethod
    def create_id() -> UUID:
        return uuid5(ids.NAMESPACE, "ledger-seal")

    def __init__(self) -> None:
        self.chain = ""
        self.last = 0

    @event(LedgerSealed)
    def seal(self, first: int, last: int, count: int, positions: list[int], leaves: str, digest: str,
             previous: str, chain: str) -> None:
        self.chain = chain
        self.last = last
