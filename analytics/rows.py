"""From ledger notifications to ClickHouse rows.

Pure functions: the same notifications always give the same rows, which is what lets
a batch shipped again after a crash carry the same dedup tokens and be dropped.

A request's row is built from all the events of the request, which the gateway's
writer commits in one transaction (so they sit together in the notification log; the
projection never cuts a batch inside one request, see `open_requests`). Events that
arrive for a request later, outside that transaction, become ledger lines only.

Re-pricing (`RepricingRun.UsageRepriced`) corrects the cost of earlier usage events:
each corrected usage event becomes a `cost_corrections` row holding the difference,
placed in the time bucket of its request's row and under that row's tenant, key,
provider and model (found in the batch, or by `request_of` among the rows shipped
before), so every cost figure is the original plus the corrections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
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
HIDDEN_FIELDS = frozenset({
    "key_hash", "ciphertext",  # secrets' traces
    # bulk that has its own home: a seal's per-event digests (the ledger), a re-pricing
    # run's corrections (the cost_corrections table)
    "positions", "leaves", "corrections",
})
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


CORRECTION_COLUMNS = (
    "time", "tenant", "key_id", "provider", "model", "request_id", "usage_event", "run_id", "price_book",
    "cost_before", "cost_after", "delta", "notification_id",
)


@dataclass(frozen=True, slots=True)
class RequestKey:
    """Where a request's row sits in the rollups: its bucket and dimensions."""

    time: datetime
    tenant: str
    key_id: str
    provider: str
    model: str


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
    corrections: list[tuple[Any, ...]] = field(default_factory=list)
    unplaced: int = 0  # corrected usage whose request row was not found (placed by the event's own fields)


RequestLookup = Callable[[set[str], Sequence[tuple[str, datetime]]], dict[str, RequestKey]]


def build_rows(events: Sequence[LedgerEvent], owner_of: Callable[[UUID], Owner | None],
               request_of: RequestLookup | None = None) -> Rows:
    """All rows for a batch. `owner_of` finds the owner of an aggregate whose first
    event is not in the batch (it reads the ledger); `request_of` finds the rows of
    requests shipped in earlier batches ({request id: RequestKey}), given their ids
    and the (tenant, usage day) of the corrections naming them."""
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
    repriced = [e for e in events if e.aggregate == "RepricingRun" and e.name == "UsageRepriced"]
    if repriced:
        rows.corrections, rows.unplaced = correction_rows(repriced, rows.requests, request_of)
    return rows


def correction_rows(repriced: Sequence[LedgerEvent], requests: Sequence[tuple[Any, ...]],
                    request_of: RequestLookup | None) -> tuple[list[tuple[Any, ...]], int]:
    """One `cost_corrections` row per corrected usage event of `repriced` (UsageRepriced
    events), and how many of them had no request row to sit with."""
    at = {name: REQUEST_COLUMNS.index(name) for name in ("request_id", "time", "tenant", "key_id", "provider",
                                                            "model")}
    known = {row[at["request_id"]]: RequestKey(row[at["time"]], row[at["tenant"]], row[at["key_id"]],
                                               row[at["provider"]], row[at["model"]]) for row in requests}
    parsed: list[tuple[LedgerEvent, str, str, Decimal, Decimal]] = []
    for event in repriced:
        for usage_event, before, after in event.fields.get("corrections") or []:
            parsed.append((event, _request_of_usage(usage_event), usage_event, Decimal(before), Decimal(after)))
    missing = {request_id for _, request_id, *_ in parsed if request_id not in known}
    if missing and request_of is not None:
        hints = sorted({(str(e.fields.get("tenant", "")), str(e.fields.get("day", ""))) for e in repriced})
        known.update(request_of(missing, [(tenant, _day(day)) for tenant, day in hints]))
    rows, unplaced = [], 0
    for event, request_id, usage_event, before, after in parsed:
        f = event.fields
        key = known.get(request_id)
        if key is None:  # not in the analytics store: the event's own fields, at the start of its day
            unplaced += 1
            key = RequestKey(_day(str(f.get("day", ""))), str(f.get("tenant", "")), str(f.get("key_id", "")), "",
                             str(f.get("model", "")))
        rows.append((key.time, key.tenant, key.key_id, key.provider, key.model, request_id, usage_event,
                     str(f.get("run_id", "")), str(f.get("price_book", "")), before, after, after - before,
                     event.notification_id))
    return rows, unplaced


def _request_of_usage(usage_event: str) -> str:
    """"<request uuid>/<version>" (ledger/accounts.event_id) -> "req_<hex>"."""
    return format_request_id(UUID(usage_event.partition("/")[0]))


def _day(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text[:10]).replace(tzinfo=UTC)
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)


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
    elif event.aggregate == "RepricingRun" and event.name == "UsageRepriced":
        # A run may span tenants: each line names the tenant and key it re-prices,
        # and its amount is the change in cost (signed).
        amount = Decimal(fields["new_cost"]) - Decimal(fields["old_cost"])
        owner = Owner(tenant=str(fields.get("tenant", "")), key_id=str(fields.get("key_id", "")))
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
