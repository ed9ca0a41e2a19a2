"""Demo traffic: a few tenants with credits, caps and keys, and the requests they send.

Every provider, plain and streamed, some `auto` routing, explicit fallback chains,
long system prompts (provider-side caching shows as cached tokens), and now and then
a fault injected through the simulator's `/_sim/faults` (429 storms, 5xx bursts,
broken streams) so the error, retry, fallback and circuit panels have something to
show. `twoapi demo` (gateway/demo.py) runs it; the tests use it as seed data.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from ledger.application import Ledger

# tenant -> (credits, monthly cap, key labels)
TENANTS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "acme": ("250.00", "120.00", ("web", "batch-jobs", "mobile")),
    "globex": ("80.00", "40.00", ("production", "staging")),
    "initech": ("15.00", "5.00", ("reports",)),
    "umbrella": ("500.00", None, ("research", "support-bot")),
}
# (model, weight): every provider, cheap models more often, as in real traffic.
MODELS: tuple[tuple[str, int], ...] = (
    ("openai/gpt-4o-mini", 22), ("openai/gpt-4o", 6), ("anthropic/claude-3-5-haiku", 14),
    ("anthropic/claude-3-5-sonnet", 8), ("google/gemini-1.5-flash", 18), ("google/gemini-1.5-pro", 5),
)
FALLBACKS = {
    "openai/gpt-4o-mini": ["anthropic/claude-3-5-haiku"],
    "anthropic/claude-3-5-haiku": ["google/gemini-1.5-flash"],
    "google/gemini-1.5-flash": ["openai/gpt-4o-mini"],
}
# Per-provider pacing for the simulator, so latency percentiles differ by provider.
LATENCY = (
    {"provider": "openai", "ttft_ms": 120, "tokens_per_s": 220},
    {"provider": "anthropic", "ttft_ms": 260, "tokens_per_s": 140},
    {"provider": "google", "ttft_ms": 180, "tokens_per_s": 300},
)
# Faults cycled through, one every `fault_every_s`.
FAULTS = (
    {"provider": "openai", "model": "gpt-4o-mini", "mode": "status", "status": 429, "retry_after": 0.1, "count": 6},
    {"provider": "anthropic", "mode": "status", "status": 529, "count": 4},
    {"provider": "google", "mode": "status", "status": 500, "count": 5},
    {"provider": "openai", "mode": "disconnect", "stream": True, "after_chunks": 3, "count": 2},
    {"provider": "anthropic", "model": "claude-3-5-haiku-20241022", "mode": "status", "status": 503, "count": 8},
)
SYSTEM_PROMPT = ("You are the support assistant of a company that sells very good umbrellas. " * 40).strip()
QUESTIONS = (
    "Summarise our refund policy in two sentences.", "Write a haiku about rain.",
    "List three uses of an umbrella that are not about rain.", "Translate 'good morning' into French.",
    "What is 17 times 23?", "Draft a polite reply to a late-delivery complaint.",
    "Explain event sourcing to a product manager.", "Give me a name for a grey cat.",
)


@dataclass(frozen=True, slots=True)
class DemoKey:
    tenant: str
    label: str
    secret: str


@dataclass
class TrafficStats:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    streams: int = 0
    providers: dict[str, int] = field(default_factory=dict)
    tenants: dict[str, int] = field(default_factory=dict)
    faults: int = 0


def seed(ledger: Ledger, tenants: dict[str, tuple[str, str | None, tuple[str, ...]]] = TENANTS) -> list[DemoKey]:
    """The demo tenants (created once, with credits and caps) and a fresh key per label."""
    keys = []
    for name, (credits, cap, labels) in tenants.items():
        if ledger.find_tenant(name) is None:
            ledger.create_tenant(name)
            ledger.add_credits(name, Decimal(credits), reference="demo credits")
            if cap is not None and hasattr(ledger, "set_tenant_limits"):
                ledger.set_tenant_limits(name, rpm=None, tpm=None, monthly_cap=Decimal(cap))
        for label in labels:
            issued = ledger.issue_key(name, label=label)
            keys.append(DemoKey(name, label, issued.secret))
    return keys


def request_body(rng: random.Random) -> dict[str, Any]:
    """One chat request as an application would send it."""
    roll = rng.random()
    question = rng.choice(QUESTIONS)
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    if rng.random() < 0.25:  # a long shared system prompt: provider-side caching shows in cached tokens
        messages.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
    body: dict[str, Any] = {"messages": messages, "max_tokens": rng.choice((32, 64, 128, 256))}
    if roll < 0.15:
        body["model"] = "auto"
        body["routing"] = {"strategy": rng.choice(("cost", "latency", "quality"))}
    else:
        model = _weighted(rng, MODELS)
        body["model"] = model
        if model in FALLBACKS and rng.random() < 0.5:
            body["models"] = FALLBACKS[model]
    if rng.random() < 0.4:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def run_traffic(gateway_url: str, keys: Sequence[DemoKey], *, simulator_url: str | None = None,
                      requests: int | None = None, duration_s: float | None = None, rate: float = 8.0,
                      concurrency: int = 6, fault_every_s: float = 12.0, seed_value: int | None = None,
                      stats: TrafficStats | None = None) -> TrafficStats:
    """Send traffic until `requests` were sent or `duration_s` passed (or forever)."""
    rng = random.Random(seed_value)
    stats = stats or TrafficStats()
    deadline = time.monotonic() + duration_s if duration_s else None
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        control = httpx.AsyncClient(base_url=simulator_url, timeout=5) if simulator_url else None
        if control is not None:
            for pacing in LATENCY:
                await control.post("/_sim/latency", json=pacing)
        tasks: set[asyncio.Task[None]] = set()
        next_fault = time.monotonic() + min(fault_every_s, 4.0)
        fault_index = 0
        try:
            while (requests is None or stats.sent < requests) and (deadline is None or time.monotonic() < deadline):
                if control is not None and time.monotonic() >= next_fault:
                    await control.post("/_sim/faults", json=FAULTS[fault_index % len(FAULTS)])
                    fault_index += 1
                    stats.faults += 1
                    next_fault = time.monotonic() + fault_every_s
                await gate.acquire()
                key = rng.choice(keys)
                task = asyncio.create_task(_one(client, key, request_body(rng), stats, gate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                stats.sent += 1
                await asyncio.sleep(rng.expovariate(rate) if rate > 0 else 0)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            if control is not None:
                await control.delete("/_sim/faults")
                await control.aclose()
    return stats


async def _one(client: httpx.AsyncClient, key: DemoKey, body: dict[str, Any], stats: TrafficStats,
               gate: asyncio.Semaphore) -> None:
    headers = {"authorization": f"Bearer {key.secret}"}
    try:
        if body.get("stream"):
            stats.streams += 1
            async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                async for _ in response.aiter_raw():
                    pass
                status, provider = response.status_code, response.headers.get("x-2api-provider", "")
        else:
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
            status, provider = response.status_code, response.headers.get("x-2api-provider", "")
    except httpx.HTTPError:
        status, provider = 0, ""
    finally:
        gate.release()
    if status == 200:
        stats.ok += 1
    else:
        stats.failed += 1
    if provider:
        stats.providers[provider] = stats.providers.get(provider, 0) + 1
    stats.tenants[key.tenant] = stats.tenants.get(key.tenant, 0) + 1


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
