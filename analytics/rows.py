"""From ledger notifications to ClickHouse rows.

Pure functions: the same notifications always give the same rows, which is what lets
a batch shipped again after a crash carry the same dedup tokens and be dropped.

A request's row is built from all the events of the request, which the gateway's
writer commits in one transaction (so they sit together in the notification log; the
projection never cuts a batch inside one request, see `open_requests`). Events that
arrive for a request later, outside that transaction (corrections), become ledger
lines only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from ledger.ids import format_request_id

ZERO = Decimal(0)
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
# Never copied into the analytics store, even though the ledger holds them: the
# analytics store is read by more people than the ledger is.
HIDDEN_FIELDS = frozenset({"key_hash", "ciphertext"})
TERMINAL = frozenset({"Completed", "Failed"})


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    notification_id: int
    originator_id: UUID
    version: int
    aggregate: str  # the aggregate class: Request, Tenant, ApiKey, ...
    name: str  # the event class: Received, UsageMetered, ...
    time: datetime
    fields: dict[str, Any]


def decode(notification: Any, mapper: Any) -> LedgerEvent:
    """A stored notification (or stored event: notification id 0) as a LedgerEvent,
    without resolving its topic to a class: events this code does not know yet still
    ship (as ledger lines)."""
    state = notification.state
    if mapper.cipher is not None:
        state = mapper.cipher.decrypt(state)
    if mapper.compressor is not None:
        state = mapper.compressor.decompress(state)
    fields = mapper.transcoder.decode(state)
    qualname = notification.topic.rpartition(":")[2]
    aggregate, _, name = qualname.rpartition(".")
    timestamp = fields.get("timestamp")
    if not isinstance(timestamp, datetime):
        timestamp = datetime.fromisoformat(timestamp) if isinstance(timestamp, str) else datetime.now(UTC)
    return LedgerEvent(
        notification_id=getattr(notification, "id", 0),
        originator_id=notification.originator_id,
        version=notification.originator_version,
        aggregate=aggregate.rpartition(".")[2] or name,
        name=name,
        time=timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC),
        fields={k: v for k, v in fields.items() if k not in ENVELOPE},
    )


def open_requests(events: Iterable[LedgerEvent]) -> set[UUID]:
    """Requests whose first event is among `events` but whose terminal event is not."""
    opened: set[UUID] = set()
    for event in events:
        if event.aggregate != "Request":
            continue
        if event.version == 1:
            opened.add(event.originator_id)
        if event.name in TERMINAL:
            opened.discard(event.originator_id)
    return opened


# -- the tables' columns, in insert order --------------------------------------

REQUEST_COLUMNS = (
    "request_id", "time", "tenant", "key_id", "endpoint", "requested_model", "provider", "model",
    "first_provider", "first_model", "strategy", "status", "error_code", "attempts", "retries",
    "fallback_used", "stream", "ttft_ms", "latency_ms", "generation_ms", "input_tokens", "output_tokens",
    "cached_tokens", "usage_source", "cost", "price_book", "notification_id",
)
ATTEMPT_COLUMNS = (
    "request_id", "attempt", "time", "tenant", "key_id", "provider", "model", "outcome", "status",
    "error_code", "retryable", "ttft_ms", "latency_ms", "notification_id",
)
EVENT_COLUMNS = (
    "notification_id", "originator_id", "version", "time", "aggregate", "event", "tenant", "key_id",
    "request_id", "provider", "model", "amount", "input_tokens", "output_tokens", "cached_tokens", "data",
)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who an aggregate belongs to, from its first event."""

    tenant: str
    key_id: str = ""


@dataclass(slots=True)
class Rows:
    requests: list[tuple[Any, ...]]
    attempts: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]


def build_rows(events: Sequence[LedgerEvent], owner_of: Callable[[UUID], Owner | None]) -> Rows:
    """All rows for a batch. `owner_of` finds the owner of an aggregate whose first
    event is not in the batch (it reads the ledger)."""
    owners: dict[UUID, Owner] = {}
    by_request: dict[UUID, list[LedgerEvent]] = {}
    for event in events:
        owner = first_event_owner(event)
        if owner is not None:
            owners[event.originator_id] = owner
        if event.aggregate == "Request":
            by_request.setdefault(event.originator_id, []).append(event)

    def owner(event: LedgerEvent) -> Owner:
        known = owners.get(event.originator_id)
        if known is None:
            known = owner_of(event.originator_id) or Owner(tenant="")
            owners[event.originator_id] = known
        return known

    rows = Rows(requests=[], attempts=[], events=[event_row(e, owner(e)) for e in events])
    for request_events in by_request.values():
        if request_events[0].version != 1:
            continue  # a later correction: a ledger line, not a new request
        request, attempts = request_rows(request_events)
        rows.requests.append(request)
        rows.attempts.extend(attempts)
    return rows


def first_event_owner(event: LedgerEvent) -> Owner | None:
    if event.version != 1:
        return None
    fields = event.fields
    if event.aggregate == "Request":
        return Owner(tenant=str(fields.get("tenant", "")), key_id=str(fields.get("key_id", "")))
    if event.aggregate == "Tenant":
        return Owner(tenant=str(fields.get("name", "")))
    if event.aggregate == "ApiKey":
        return Owner(tenant=str(fields.get("tenant", "")), key_id=event.originator_id.hex)
    tenant = fields.get("tenant")
    return Owner(tenant=tenant) if isinstance(tenant, str) else None


def event_row(event: LedgerEvent, owner: Owner) -> tuple[Any, ...]:
    fields = event.fields
    amount = ZERO
    if event.name == "UsageMetered":
        amount = Decimal(fields["cost"])
    elif event.aggregate == "Tenant" and event.name in ("CreditsAdded", "BalanceAdjusted"):
        amount = Decimal(fields["amount"])  # BalanceAdjusted is signed
    request_id = format_request_id(event.originator_id) if event.aggregate == "Request" else ""
    data = {k: v for k, v in fields.items() if k not in HIDDEN_FIELDS}
    return (
        event.notification_id, event.originator_id, event.version, event.time, event.aggregate, event.name,
        owner.tenant, owner.key_id, request_id, _text(fields.get("provider")), _text(fields.get("model")),
        amount, _count(fields.get("input_tokens")), _count(fields.get("output_tokens")),
        _count(fields.get("cached_tokens")), orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode(),
    )


def request_rows(events: Sequence[LedgerEvent]) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The request's row and its attempts' rows, from its events (version order)."""
    received = events[0].fields
    request_id = format_request_id(events[0].originator_id)
    tenant, key_id = str(received.get("tenant", "")), str(received.get("key_id", ""))
    strategy = ""
    status, error_code, latency_ms = 0, "", 0.0
    retries = 0
    cost, input_tokens, output_tokens, cached_tokens = ZERO, 0, 0, 0
    usage_source, price_book, metered = "", "", None
    stream_ttft: float | None = None
    attempts: dict[int, dict[str, Any]] = {}
    for event in events:
        f = event.fields
        match event.name:
            case "Routed":
                strategy = str(f.get("strategy", ""))
            case "AttemptStarted":
                attempts[f["attempt"]] = {"time": event.time, "provider": f["provider"], "model": f["model"],
                                          "outcome": "unfinished", "status": 0, "error_code": "", "retryable": 0,
                                          "ttft_ms": None, "latency_ms": 0.0}
            case "AttemptFailed":
                attempts.setdefault(f["attempt"], _attempt_from(event)).update(
                    outcome="error", status=f.get("status") or 0, error_code=f.get("error_code", ""),
                    retryable=int(bool(f.get("retryable"))), latency_ms=float(f.get("latency_ms") or 0.0))
            case "AttemptSucceeded":
                attempts.setdefault(f["attempt"], _attempt_from(event)).update(
                    outcome="ok", status=f.get("status") or 200, ttft_ms=_float(f.get("ttft_ms")),
                    latency_ms=float(f.get("latency_ms") or 0.0))
            case "RetryScheduled":
                retries += 1
            case "StreamSummarized":
                stream_ttft = _float(f.get("ttft_ms"))
            case "UsageMetered":
                # Summed, not replaced: the ledger's total is the sum of its UsageMetered
                # events, and analytics must equal it to the nano-dollar.
                cost += Decimal(f["cost"])
                input_tokens += int(f["input_tokens"])
                output_tokens += int(f["output_tokens"])
                cached_tokens += int(f["cached_tokens"])
                usage_source = "estimated" if "estimated" in (usage_source, f.get("source")) else str(f["source"])
                price_book, metered = str(f.get("price_book", "")), f
            case "Completed":
                status, error_code, latency_ms = int(f["status"]), "", float(f["latency_ms"])
            case "Failed":
                status, error_code = int(f["status"]), str(f.get("error_code", ""))
                latency_ms = float(f.get("latency_ms") or 0.0)
    ordered = [attempts[n] for n in sorted(attempts)]
    succeeded = [a for a in ordered if a["outcome"] == "ok"]
    served = metered or (succeeded[-1] if succeeded else ordered[-1] if ordered else {})
    first = ordered[0] if ordered else {}
    ttft_ms = stream_ttft if stream_ttft is not None else (succeeded[-1]["ttft_ms"] if succeeded else None)
    generation_ms = max(latency_ms - (ttft_ms or 0.0), 0.0) if ttft_ms is not None else 0.0
    last_id = events[-1].notification_id
    request = (
        request_id, events[0].time, tenant, key_id, str(received.get("endpoint", "")),
        str(received.get("model", "")), _text(served.get("provider")), _text(served.get("model")),
        _text(first.get("provider")), _text(first.get("model")), strategy, status, error_code,
        min(len(ordered), 255), min(retries, 255), int(len({a["model"] for a in ordered}) > 1),
        int(bool(received.get("stream"))), ttft_ms, latency_ms, generation_ms, input_tokens, output_tokens,
        cached_tokens, usage_source, cost, price_book, last_id,
    )
    attempt_rows = [
        (request_id, number, a["time"], tenant, key_id, a["provider"], a["model"], a["outcome"], a["status"],
         a["error_code"], a["retryable"], a["ttft_ms"], a["latency_ms"], last_id)
        for number, a in sorted(attempts.items())
    ]
    return request, attempt_rows


def _attempt_from(event: LedgerEvent) -> dict[str, Any]:
    # An outcome without its AttemptStarted (not written by today's gateway, but the
    # ledger is read by code younger than the events).
    f = event.fields
    return {"time": event.time, "provider": f.get("provider", ""), "model": f.get("model", ""),
            "outcome": "unfinished", "status": 0, "error_code": "", "retryable": 0, "ttft_ms": None,
            "latency_ms": 0.0}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
