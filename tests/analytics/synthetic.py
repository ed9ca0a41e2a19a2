"""Requests written straight into a ledger, as the gateway's writer writes them (the
same event classes, one RequestTrace per request, group-committed), for tests that
need thousands of requests faster than HTTP would give them. The expected totals
are kept while writing, independently of anything under test."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from ledger.application import Ledger
from ledger.events import Request
from ledger.trace import RequestTrace
from ledger.writer import LedgerWriter

MODELS = (("openai", "openai/gpt-4o-mini"), ("anthropic", "anthropic/claude-3-5-haiku"),
          ("google", "google/gemini-1.5-flash"))


@dataclass
class Expected:
    requests: dict[str, int] = field(default_factory=dict)
    cost: dict[str, Decimal] = field(default_factory=dict)
    output_tokens: dict[str, int] = field(default_factory=dict)

    def add(self, tenant: str, cost: Decimal, output_tokens: int) -> None:
        self.requests[tenant] = self.requests.get(tenant, 0) + 1
        self.cost[tenant] = self.cost.get(tenant, Decimal(0)) + cost
        self.output_tokens[tenant] = self.output_tokens.get(tenant, 0) + output_tokens


def write_requests(ledger: Ledger, tenants: dict[str, str], count: int, seed: int = 7,
                   expected: Expected | None = None) -> Expected:
    """`count` requests over `tenants` ({tenant: key_id}); some retried and fallen back,
    some failed, some streamed."""
    rng = random.Random(seed)
    expected = expected or Expected()
    writer = LedgerWriter(ledger)
    futures = []
    names = sorted(tenants)
    for i in range(count):
        tenant = names[i % len(names)]
        trace = RequestTrace(uuid.uuid4())
        provider, model = MODELS[i % len(MODELS)]
        stream = i % 4 == 0
        trace.add(Request.Received, tenant=tenant, key_id=tenants[tenant], endpoint="chat.completions", model=model,
                  stream=stream, body_bytes=100, body_sha256="0" * 64, messages=1)
        trace.add(Request.Routed, strategy="explicit", candidates=[], chain=[model], reason="requested model")
        attempt = 1
        trace.add(Request.AttemptStarted, attempt=attempt, provider=provider, model=model)
        if i % 7 == 0:  # a 429, a retry, then a fallback
            trace.add(Request.AttemptFailed, attempt=attempt, provider=provider, model=model,
                      error_code="upstream_rate_limited", status=429, retryable=True, latency_ms=5.0,
                      message="The provider rate-limited the request.")
            trace.add(Request.RetryScheduled, model=model, delay_ms=10.0, retry_after_ms=None)
            attempt += 1
            provider, model = MODELS[(i + 1) % len(MODELS)]
            trace.add(Request.AttemptStarted, attempt=attempt, provider=provider, model=model)
        if i % 11 == 0:  # failed for good: nothing metered
            trace.add(Request.AttemptFailed, attempt=attempt, provider=provider, model=model,
                      error_code="upstream_error", status=500, retryable=True, latency_ms=7.0,
                      message="The provider failed.")
            trace.add(Request.Failed, status=502, error_code="all_candidates_failed", message="failed",
                      latency_ms=20.0)
            expected.add(tenant, Decimal(0), 0)
        else:
            ttft = round(rng.uniform(50, 400), 3) if stream else None
            latency = round(rng.uniform(100, 2000), 3)
            trace.add(Request.AttemptSucceeded, attempt=attempt, provider=provider, model=model, status=200,
                      ttft_ms=ttft, latency_ms=latency)
            if stream:
                trace.add(Request.StreamSummarized, chunks=9, bytes=900, ttft_ms=ttft, duration_ms=latency,
                          finish_reason="stop", client_disconnected=False)
            output = rng.randint(1, 500)
            cost = Decimal(rng.randint(1, 9_999_999)) / Decimal(1_000_000_000)  # nano-dollar amounts
            trace.add(Request.UsageMetered, provider=provider, model=model, input_tokens=rng.randint(5, 900),
                      output_tokens=output, cached_tokens=0, source="provider", price_book="test", cost=str(cost))
            trace.add(Request.Completed, status=200, latency_ms=latency)
            expected.add(tenant, cost, output)
        futures.append(writer.submit(trace))
    for future in futures:
        future.result()
    writer.close()
    return expected


def seed_ledger(ledger: Ledger, tenants: tuple[str, ...]) -> dict[str, str]:
    keys = {}
    for name in tenants:
        ledger.create_tenant(name)
        ledger.add_credits(name, Decimal("10.00"), reference="seed")
        keys[name] = ledger.issue_key(name, label="k").key_id
    return keys
