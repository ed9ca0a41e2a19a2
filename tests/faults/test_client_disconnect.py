"""A client that leaves mid-stream: the upstream call is cancelled, what was produced
is metered, and nothing leaks."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import DEMO_KEY
from tests.routing.conftest import ledger_events


async def _open_upstream_connections(services) -> int:
    connector = services.http.session.connector
    return sum(len(v) for v in connector._acquired_per_host.values())


def test_a_client_leaving_mid_stream_cancels_upstream_and_is_metered_as_estimated(make_gateway, sim):
    gateway = make_gateway()
    services = gateway.app.extensions["twoapi"]
    sim.latency(provider="openai", ttft_ms=20, tokens_per_s=20)  # a ~1.5 s stream
    baseline_tasks = gateway.run(_count_tasks())
    request_id = None
    with httpx.stream(
        "POST", gateway.api_url + "/chat/completions",
        headers={"Authorization": f"Bearer {DEMO_KEY}"},
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "tell me"}], "stream": True},
        timeout=10,
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        seen = [line for _, line in zip(range(6), lines, strict=False) if line.startswith("data:")]
        assert len(seen) >= 3
    left_at = time.monotonic()

    deadline = time.monotonic() + 3
    events: list[dict] = []
    while time.monotonic() < deadline:
        events = ledger_events(gateway, request_id)
        if events and events[-1]["event"] in ("Failed", "Completed"):
            break
        time.sleep(0.05)
    assert time.monotonic() - left_at < 1.0, "the disconnect was not noticed promptly"
    names = [e["event"] for e in events]
    assert names[-3:] == ["StreamSummarized", "UsageMetered", "Failed"]
    summary = events[-3]
    assert summary["client_disconnected"] is True and summary["chunks"] >= 3
    usage = events[-2]
    assert usage["source"] == "estimated" and usage["output_tokens"] >= 2 and usage["input_tokens"] > 0
    assert events[-1]["status"] == 499

    # Nothing left behind: no upstream connection held, no extra tasks.
    assert gateway.run(_open_upstream_connections(services)) == 0
    time.sleep(0.2)
    assert gateway.run(_count_tasks()) <= baseline_tasks


async def _count_tasks() -> int:
    return len(asyncio.all_tasks()) - 1  # not this one
