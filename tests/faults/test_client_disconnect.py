"""A client that leaves mid-stream, or before a plain answer: the upstream call is
cancelled, the request is recorded with what was produced (or the prompt the provider
had) metered as estimated, and nothing leaks."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from eventsourcing.utils import get_topic

from ledger.application import Ledger
from ledger.events import Request
from ledger.ids import format_request_id
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


def _last_request_id(gateway) -> str | None:
    ledger = Ledger.open(None, gateway.settings.data_dir)
    try:
        received = ledger.recorder.select_notifications(start=0, limit=10_000, topics=[get_topic(Request.Received)])
        return format_request_id(received[-1].originator_id) if received else None
    finally:
        ledger.close()


@pytest.mark.parametrize("chat_edge", [True, False], ids=["edge", "quart"])
def test_a_client_leaving_before_a_plain_answer_is_recorded_and_its_prompt_billed(make_gateway, sim, chat_edge):
    gateway = make_gateway(chat_edge=chat_edge, upstream_timeout_s=5.0)
    services = gateway.app.extensions["twoapi"]
    sim.latency(provider="openai", ttft_ms=1500)  # the answer would take 1.5 s
    baseline_tasks = gateway.run(_count_tasks())
    try:
        httpx.post(gateway.api_url + "/chat/completions", headers={"Authorization": f"Bearer {DEMO_KEY}"},
                   json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "tell me " * 20}]},
                   timeout=0.4)
    except httpx.ReadTimeout:
        pass  # the client gives up and closes its connection
    else:
        pytest.fail("the answer came before the client left")
    left_at = time.monotonic()

    events: list[dict] = []
    while time.monotonic() < left_at + 3:
        request_id = _last_request_id(gateway)
        events = ledger_events(gateway, request_id) if request_id else []
        if events and events[-1]["event"] in ("Failed", "Completed"):
            break
        time.sleep(0.05)
    assert time.monotonic() - left_at < 1.0, "the disconnect was not recorded promptly"
    assert [e["event"] for e in events] == ["Received", "Routed", "AttemptStarted", "UsageMetered", "Failed"]
    usage, failed = events[-2], events[-1]
    assert usage["source"] == "estimated" and usage["input_tokens"] > 0 and usage["output_tokens"] == 0
    assert usage["provider"] == "openai" and usage["cost"] != "0"
    assert failed["status"] == 499 and failed["error_code"] == "client_disconnected"

    assert gateway.run(_open_upstream_connections(services)) == 0
    time.sleep(0.2)
    assert gateway.run(_count_tasks()) <= baseline_tasks


def test_a_client_leaving_an_embeddings_call_is_recorded_with_its_input_estimated(make_gateway, sim):
    gateway = make_gateway(upstream_timeout_s=5.0)
    sim.latency(provider="openai", ttft_ms=1500)
    texts = ["a" * 400, "b" * 200]  # ~100 and ~50 tokens
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {DEMO_KEY}"},
                   json={"model": "openai/text-embedding-3-small", "input": texts}, timeout=0.4)

    events: list[dict] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        request_id = _last_request_id(gateway)
        events = ledger_events(gateway, request_id) if request_id else []
        if events and events[-1]["event"] in ("Failed", "Completed"):
            break
        time.sleep(0.05)
    assert [e["event"] for e in events] == ["Received", "Routed", "AttemptStarted", "UsageMetered", "Failed"]
    assert events[0]["endpoint"] == "embeddings"
    usage = events[-2]
    assert (usage["source"], usage["input_tokens"], usage["output_tokens"]) == ("estimated", 150, 0)
    assert events[-1]["status"] == 499
