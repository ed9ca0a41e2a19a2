"""Metering through the real gateway: streams are billed exactly as the same
non-streaming requests, cached tokens once at the cached price, each request at the
price book in force when it was received, and whatever the mix of requests, entries
== projected balance == replayed balance."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from adapters.catalog import default_catalog
from ledger.accounts import replay_balances
from ledger.ids import parse_request_id
from ledger.pricing import quantize
from simulator.control import CACHE_MIN_TOKENS
from tests.tenancy.conftest import Admin, caught_up, chat

CATALOG = default_catalog()
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"]
LONG_SYSTEM = " ".join(f"rule{n} applies." for n in range(CACHE_MIN_TOKENS // 3 + 1))


def metered(ledger, response: httpx.Response) -> dict:
    events = ledger.event_dicts(parse_request_id(response.headers["x-request-id"]))
    usage = [e for e in events if e["event"] == "UsageMetered"]
    assert len(usage) == 1, [e["event"] for e in events]
    return usage[0]


def stream(gateway, key: str, **body) -> httpx.Response:
    with httpx.stream("POST", gateway.api_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"messages": [{"role": "user", "content": "Count to five."}], "stream": True, **body},
                      timeout=30) as response:
        response.read()
    assert response.status_code == 200 and response.text.rstrip().endswith("data: [DONE]")
    return response


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_is_billed_exactly_as_the_same_request_without_streaming(gw, admin, ledger_and_view, model):
    ledger, view = ledger_and_view
    tenant = admin.tenant("acme")
    plain = chat(gw, tenant.key, model=model, messages=[{"role": "user", "content": "Count to five."}])
    assert plain.status_code == 200
    streamed = stream(gw, tenant.key, model=model)
    with_usage = stream(gw, tenant.key, model=model, stream_options={"include_usage": True})
    fields = ("input_tokens", "output_tokens", "cached_tokens", "cost", "price_book", "source", "model")
    billed = [{f: metered(ledger, r)[f] for f in fields} for r in (plain, streamed, with_usage)]
    assert billed[0] == billed[1] == billed[2]
    assert billed[0]["source"] == "provider" and Decimal(billed[0]["cost"]) > 0
    caught_up(ledger, view)
    charges = [e["amount"] for e in view.entries("acme", "usage")]
    assert charges == [-Decimal(billed[0]["cost"])] * 3


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"])
def test_cached_tokens_are_billed_once_at_the_cached_price(gw, admin, ledger_and_view, simulator, model):
    ledger, _ = ledger_and_view
    httpx.post(simulator.url + "/_sim/reset").raise_for_status()
    tenant = admin.tenant("acme")
    messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "What applies?"}]
    first = metered(ledger, chat(gw, tenant.key, model=model, messages=messages))
    second = metered(ledger, chat(gw, tenant.key, model=model, messages=messages))
    assert first["cached_tokens"] == 0 and second["cached_tokens"] >= CACHE_MIN_TOKENS
    assert first["input_tokens"] == second["input_tokens"]  # cached tokens are part of the input, once
    price = CATALOG.find(model).price
    uncached = second["input_tokens"] - second["cached_tokens"]
    expected = quantize((uncached * price["input"] + second["cached_tokens"] * price["cached_input"]
                         + second["output_tokens"] * price["output"]) / 1_000_000)
    assert Decimal(second["cost"]) == expected
    saved = quantize(second["cached_tokens"] * (price["input"] - price["cached_input"]) / 1_000_000)
    assert abs(Decimal(first["cost"]) - Decimal(second["cost"]) - saved) <= Decimal("0.000000001")


def test_each_request_is_priced_by_the_book_in_force_when_it_was_received(make_gateway):
    first, second = make_gateway(), make_gateway()
    admin = Admin(first.url)
    tenant = admin.tenant("acme")
    from ledger.application import Ledger

    ledger = Ledger.open(first.settings.database_url, first.settings.data_dir)
    try:
        base = metered(ledger, chat(second, tenant.key))
        assert base["price_book"].startswith("list-")
        effective = datetime.now(UTC) + timedelta(seconds=2)
        admin.ok("POST", "/admin/price-books", json={
            "prices": {"openai/gpt-4o-mini": {"input": "1000", "output": "2000", "cached_input": "500"}},
            "effective_at": effective.isoformat(), "version": "2025-q3"})
        before = metered(ledger, chat(second, tenant.key))
        assert before["price_book"] == base["price_book"] and before["cost"] == base["cost"]
        time.sleep(max(0.0, (effective - datetime.now(UTC)).total_seconds()) + 1.1)  # + a refresh period
        for gateway in (first, second):
            after = metered(ledger, chat(gateway, tenant.key))
            assert after["price_book"] == "2025-q3"
            assert Decimal(after["cost"]) == quantize(
                (after["input_tokens"] * 1000 + after["output_tokens"] * 2000) / Decimal(1_000_000))
        other = metered(ledger, chat(first, tenant.key, model="anthropic/claude-3-5-haiku"))
        assert other["price_book"] == base["price_book"]  # not in the new book: priced by the base book
    finally:
        ledger.close()


def test_a_stream_cut_short_is_billed_by_estimate_and_says_so(gw, admin, ledger_and_view, simulator):
    ledger, view = ledger_and_view
    tenant = admin.tenant("acme")
    httpx.post(simulator.url + "/_sim/latency", json={"provider": "openai", "model": "gpt-4o-mini", "ttft_ms": 10,
                                                      "tokens_per_s": 30}).raise_for_status()
    try:
        with httpx.stream("POST", gw.api_url + "/chat/completions", headers={"Authorization": f"Bearer {tenant.key}"},
                          json={"model": "openai/gpt-4o-mini", "stream": True,
                                "messages": [{"role": "user", "content": "Tell me a long story."}]}) as response:
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("data:") and "content" in line:
                    break
    finally:
        httpx.post(simulator.url + "/_sim/reset").raise_for_status()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        events = ledger.event_dicts(parse_request_id(request_id))
        if events and events[-1]["event"] in ("Failed", "Completed"):
            break
        time.sleep(0.05)
    usage = next(e for e in events if e["event"] == "UsageMetered")
    assert usage["source"] == "estimated" and Decimal(usage["cost"]) > 0
    caught_up(ledger, view)
    assert [e["amount"] for e in view.entries("acme", "usage")] == [-Decimal(usage["cost"])]
    rows = view.usage_rows("acme", datetime(2000, 1, 1).date(), datetime(2100, 1, 1).date())
    assert sum(r["estimated"] for r in rows) == 1


def test_mixed_requests_through_the_gateway_reconcile_to_the_nanodollar(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    tenants = [admin.tenant(name, credits="2.000000001", keys=2) for name in ("acme", "beta")]
    for i in range(24):
        tenant = tenants[i % 2]
        key = tenant.keys[i % 3 % 2]["key"]
        model = MODELS[i % 3]
        if i % 4 == 0:
            stream(gw, key, model=model)
        elif i % 7 == 0:
            assert chat(gw, key, model="nope/unknown").status_code == 404  # refused, not billed
        else:
            assert chat(gw, key, model=model).status_code == 200
    admin.credits("beta", "0.5", "INV-2")
    admin.ok("POST", "/admin/tenants/acme/adjustments", json={"amount": "-0.000000003", "reason": "rounding"})
    caught_up(ledger, view)
    projected, replayed = view.balances(), replay_balances(ledger)
    assert projected == replayed
    for tenant in tenants:
        entries = sum(e["amount"] for e in view.entries(tenant.name))
        assert entries == projected["tenant:" + tenant.name]
        headers = {"Authorization": f"Bearer {tenant.key}"}
        assert Decimal(httpx.get(gw.api_url + "/usage", headers=headers).json()["balance"]) == entries


def test_images_and_embeddings_are_priced_by_the_published_book(gw, admin, ledger_and_view):
    ledger, _ = ledger_and_view
    tenant = admin.tenant("acme")
    admin.ok("POST", "/admin/price-books", json={
        "effective_at": "2020-01-01T00:00:00Z", "version": "media-1",
        "prices": {"openai/dall-e-3": {"image": "0.055"}, "openai/text-embedding-3-small": {"embedding": "0.5"}}})
    headers = {"Authorization": f"Bearer {tenant.key}"}
    image = httpx.post(gw.api_url + "/images/generations", headers=headers, timeout=30,
                       json={"model": "openai/dall-e-3", "prompt": "a cat", "n": 1})
    assert image.status_code == 200, image.text
    usage = metered(ledger, image)
    assert usage["price_book"] == "media-1" and usage["images"] == 1
    assert Decimal(usage["cost"]) == Decimal("0.055")  # one image; no token prices in this version
    embedding = httpx.post(gw.api_url + "/embeddings", headers=headers, timeout=30,
                           json={"model": "openai/text-embedding-3-small", "input": "hello world"})
    assert embedding.status_code == 200, embedding.text
    usage = metered(ledger, embedding)
    assert usage["price_book"] == "media-1"
    assert Decimal(usage["cost"]) == quantize(usage["input_tokens"] * Decimal("0.5") / 1_000_000)
