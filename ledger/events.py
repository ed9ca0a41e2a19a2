"""The aggregates and their events: the ledger's vocabulary.

Events hold only JSON primitives (money as exact decimal strings), so the orjson
transcoder can store them without type tags. No prompt or completion text, and no
secrets, ever appear in an event: requests carry hashes and sizes only.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

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

    @staticmethod
    def create_id(name: str) -> UUID:
        return ids.tenant_id(name)

    def __init__(self, name: str) -> None:
        self.name = name
        self.credits_added: list[str] = []

    @event(CreditsAdded)
    def add_credits(self, amount: str, reference: str) -> None:
        self.credits_added.append(amount)


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

    @staticmethod
    def create_id(key_hash: str, **_: object) -> UUID:
        return ids.api_key_id(key_hash)

    def __init__(self, tenant: str, key_hash: str, prefix: str, label: str) -> None:
        self.tenant = tenant
        self.key_hash = key_hash
        self.prefix = prefix
        self.label = label
        self.revoked = False

    @event(Revoked)
    def revoke(self, reason: str) -> None:
        self.revoked = True
