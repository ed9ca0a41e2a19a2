"""After N requests through the gateway, the analytics totals per tenant equal the
ledger's totals exactly: cost to the nano-dollar, token counts, request counts; in
the raw rows, in the hourly rollups, over the admin API and over each tenant's own
API. On the SQLite ledger and on PostgreSQL.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import httpx
import openai

from tests.analytics.conftest import TENANTS, ledger_totals_by_request

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "google/gemini-1.5-flash", "openai/gpt-4o",
          "anthropic/claude-3-5-sonnet", "google/gemini-1.5-pro"]
WIDE = {"since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"}


def send_requests(base_url: str, keys: dict[str, list[str]], simulator_url: str, count: int) -> list[str]:
    """`count` requests, round-robin over tenants, keys and models; every third one
    streamed; a few fail upstream (and fall back, or fail), one stream is cut short."""
    request_ids: list[str] = []
    all_keys = [(tenant, key) for tenant in keys for key in keys[tenant]]
    httpx.post(simulator_url + "/_sim/faults",
               json={"provider": "google", "model": "gemini-1.5-pro", "mode": "status", "status": 500, "count": 2})
    httpx.post(simulator_url + "/_sim/faults",
               json={"provider": "anthropic", "mode": "disconnect", "stream": True, "after_chunks": 2, "count": 1})
    try:
        for i, (tenant_key, model) in enumerate(zip(itertools.cycle(all_keys), itertools.cycle(MODELS))):
            if i == count:
                break
            client = openai.OpenAI(base_url=base_url + "/v1", api_key=tenant_key[1], max_retries=0)
            body = {"model": model, "messages": [{"role": "user", "content": f"question {i}"}],
                    "max_tokens": 16 + i % 5}
            try:
                if i % 3 == 0:
                    raw = client.chat.completions.with_raw_response.create(
                        **body, stream=True, stream_options={"include_usage": True})
                    request_ids.append(raw.headers["x-request-id"])
                    for _ in raw.parse():
                        pass
                else:
                    raw = client.chat.completions.with_raw_response.create(**body)
                    request_ids.append(raw.headers["x-request-id"])
            except openai.APIStatusError as error:
                request_ids.append(error.response.headers["x-request-id"])
            except openai.APIError:
                pass  # a stream cut short: its id was taken from the headers already
    finally:
        httpx.delete(simulator_url + "/_sim/faults")
    return request_ids


def test_analytics_totals_equal_the_ledger_exactly(analytics_gateway, simulator):
    gw = analytics_gateway
    request_ids = send_requests(gw.url, gw.keys, simulator.url, 36)
    assert len(request_ids) == 36
    gw.wait_caught_up()
    expected = ledger_totals_by_request(gw.gateway.settings.database_url, gw.gateway.settings.data_dir, request_ids)
    assert set(expected) == set(TENANTS)
    assert sum(row["cost"] for row in expected.values()) > 0

    # Raw rows, exact (FINAL): the admin API, every tenant at once.
    response = gw.admin("totals", **WIDE)
    assert response.status_code == 200, response.text
    got = {row["tenant"]: row for row in response.json()["data"]}
    for tenant, want in expected.items():
        row = got[tenant]
        assert Decimal(row["cost"]) == want["cost"], tenant
        assert row["cost"] == str(want["cost"].quantize(Decimal("0.000000001")))  # exact string on the wire
        for field in ("requests", "input_tokens", "output_tokens", "cached_tokens"):
            assert row[field] == want[field], (tenant, field)

    # The hourly rollups (materialized views) agree to the nano-dollar too.
    rollup = gw.admin("breakdown", by="tenant", source="rollup", **WIDE).json()
    assert rollup["source"] == "rollup"
    by_tenant = {row["group"]: row for row in rollup["data"]}
    for tenant, want in expected.items():
        assert Decimal(by_tenant[tenant]["cost"]) == want["cost"]
        assert by_tenant[tenant]["requests"] == want["requests"]
        assert by_tenant[tenant]["output_tokens"] == want["output_tokens"]

    # Each tenant, through its own key, sees exactly its own totals.
    for tenant, keys in gw.keys.items():
        mine = gw.tenant(keys[0], "totals", **WIDE)
        assert mine.status_code == 200, mine.text
        rows = mine.json()["data"]
        assert [row["tenant"] for row in rows] == [tenant]
        assert Decimal(rows[0]["cost"]) == expected[tenant]["cost"]
        budget = gw.tenant(keys[1], "budget").json()["summary"]
        assert Decimal(budget["spend"]) == expected[tenant]["cost"]
        assert Decimal(budget["balance"]) == Decimal("50.00") - expected[tenant]["cost"]

    # The reconciliation endpoint reads the ledger's events itself and agrees.
    for tenant in TENANTS:
        report = gw.admin("reconciliation", tenant=tenant).json()
        assert report["match"], report
        assert Decimal(report["lines"]["cost"]["ledger"]) == expected[tenant]["cost"]


def test_request_rows_describe_what_happened(sqlite_analytics_gateway, simulator):
    """Streams, fallbacks, failures and estimated usage land in the right columns."""
    gw = sqlite_analytics_gateway
    key = gw.keys["acme"][0]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    httpx.post(simulator.url + "/_sim/faults",
               json={"provider": "openai", "model": "gpt-4o-mini", "mode": "status", "status": 500, "count": 10})
    fell_back = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
        extra_body={"models": ["anthropic/claude-3-5-haiku"]})
    httpx.delete(simulator.url + "/_sim/faults")
    assert fell_back.headers["x-2api-provider"] == "anthropic"
    streamed = client.chat.completions.with_raw_response.create(
        model="google/gemini-1.5-flash", messages=[{"role": "user", "content": "hi"}], stream=True)
    for _ in streamed.parse():
        pass
    gw.wait_caught_up()
    lines = gw.admin("ledger", tenant="acme", request_id=fell_back.headers["x-request-id"], **WIDE).json()["data"]
    assert {line["event"] for line in lines} >= {"Received", "AttemptFailed", "AttemptSucceeded", "UsageMetered"}
    health = {row["provider"]: row for row in gw.admin("provider_health", **WIDE).json()["data"]}
    assert health["openai"]["fallback_rate"] == 1.0  # the one request first tried on openai fell back
    assert health["openai"]["retry_rate"] == 1.0
    assert health["openai"]["attempt_error_rate"] == 1.0
    assert health["anthropic"]["attempt_error_rate"] == 0.0
    latency = {row["model"]: row for row in gw.admin("latency", **WIDE).json()["data"]}
    assert latency["google/gemini-1.5-flash"]["ttft_p50_ms"] is not None  # the stream's time to first token
    assert latency["anthropic/claude-3-5-haiku"]["p50_ms"] > 0
    events = gw.admin("request", request_id=streamed.headers["x-request-id"]).json()["data"]
    assert [e["event"] for e in events][-3:] == ["StreamSummarized", "UsageMetered", "Completed"]
