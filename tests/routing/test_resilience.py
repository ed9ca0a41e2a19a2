"""Retries, fallback, deadlines and circuit breakers, driven by the simulator's
fault injection, observed through the official openai SDK and the ledger."""

from __future__ import annotations

import time

import openai
import pytest

from tests.routing.conftest import REDIS_URL, client_of, ledger_events

HI = [{"role": "user", "content": "hi"}]
PRIMARY, PRIMARY_UPSTREAM = "openai/gpt-4o-mini", "gpt-4o-mini"
FALLBACK = "anthropic/claude-3-5-haiku"


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def attempts(events: list[dict]) -> list[tuple[str, str]]:
    """(model, outcome) per attempt, in order."""
    outcome = []
    for event in events:
        if event["event"] == "AttemptFailed":
            outcome.append((event["model"], event["error_code"]))
        elif event["event"] == "AttemptSucceeded":
            outcome.append((event["model"], "ok"))
    return outcome


def test_a_429_storm_on_the_primary_falls_back_and_the_client_sees_a_normal_answer(make_gateway, sim):
    gateway = make_gateway()
    sim.fault(provider="openai", model=PRIMARY_UPSTREAM, mode="status", status=429, retry_after=0.2)
    raw = client_of(gateway).chat.completions.with_raw_response.create(
        model=PRIMARY, messages=HI, extra_body={"models": [FALLBACK]}
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-2api-provider"] == "anthropic"
    assert raw.headers["x-2api-model"] == FALLBACK
    events = ledger_events(gateway, raw.headers["x-request-id"])
    tried = attempts(events)
    assert tried[0] == (PRIMARY, "upstream_rate_limited")
    assert tried[-1] == (FALLBACK, "ok")
    assert raw.headers["x-2api-attempts"] == str(len(tried))
    retry = next(e for e in events if e["event"] == "RetryScheduled")
    assert retry["retry_after_ms"] == 200.0 and retry["delay_ms"] == 200.0


def test_a_500_then_success_is_one_retry_on_the_same_model_after_a_backoff(make_gateway, sim):
    gateway = make_gateway()
    sim.fault(provider="openai", model=PRIMARY_UPSTREAM, mode="status", status=500, count=1)
    raw = client_of(gateway).chat.completions.with_raw_response.create(model=PRIMARY, messages=HI)
    assert raw.parse().choices[0].message.content
    events = ledger_events(gateway, raw.headers["x-request-id"])
    assert attempts(events) == [(PRIMARY, "upstream_error"), (PRIMARY, "ok")]
    failed = next(e for e in events if e["event"] == "AttemptFailed")
    retry = next(e for e in events if e["event"] == "RetryScheduled")
    second_start = [e for e in events if e["event"] == "AttemptStarted"][1]
    from datetime import datetime

    waited_ms = (datetime.fromisoformat(second_start["timestamp"]) - datetime.fromisoformat(failed["timestamp"]))
    assert 0 <= retry["delay_ms"] <= 50.0  # full jitter under the first step's cap
    assert waited_ms.total_seconds() * 1000 >= retry["delay_ms"] - 1


def test_an_upstream_timeout_falls_back_within_the_deadline(make_gateway, sim):
    gateway = make_gateway(upstream_timeout_s=0.4)
    sim.fault(provider="openai", model=PRIMARY_UPSTREAM, mode="timeout")
    started = time.monotonic()
    raw = client_of(gateway).chat.completions.with_raw_response.create(
        model=PRIMARY, messages=HI, extra_body={"models": [FALLBACK], "routing": {"timeout_ms": 3000}}
    )
    elapsed = time.monotonic() - started
    assert raw.parse().choices[0].message.content
    tried = attempts(ledger_events(gateway, raw.headers["x-request-id"]))
    assert tried[0] == (PRIMARY, "upstream_timeout") and tried[-1] == (FALLBACK, "ok")
    assert elapsed < 3.0


def test_total_time_never_exceeds_the_deadline_by_more_than_a_small_margin(make_gateway, sim):
    gateway = make_gateway(upstream_timeout_s=30)
    sim.fault(provider="openai", mode="timeout")
    sim.fault(provider="anthropic", mode="timeout")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client_of(gateway).chat.completions.create(
            model=PRIMARY, messages=HI, extra_body={"models": [FALLBACK], "routing": {"timeout_ms": 1000}}
        )
    elapsed = time.monotonic() - started
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    assert 0.95 <= elapsed < 1.4


def test_a_stream_cut_before_its_first_chunk_falls_back(make_gateway, sim):
    gateway = make_gateway()
    sim.fault(provider="openai", model=PRIMARY_UPSTREAM, mode="disconnect")
    raw = client_of(gateway).chat.completions.with_raw_response.create(
        model=PRIMARY, messages=HI, stream=True, extra_body={"models": [FALLBACK]}
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text
    assert raw.headers["x-2api-model"] == FALLBACK
    tried = attempts(ledger_events(gateway, raw.headers["x-request-id"]))
    assert tried[0] == (PRIMARY, "upstream_error") and tried[-1] == (FALLBACK, "ok")


def test_a_stream_cut_after_its_first_chunk_ends_with_an_error_and_no_duplicate_content(make_gateway, sim):
    gateway = make_gateway()
    client = client_of(gateway)
    full = client.chat.completions.create(model=PRIMARY, messages=HI).choices[0].message.content
    sim.fault(provider="openai", model=PRIMARY_UPSTREAM, mode="disconnect", after_chunks=4, stream=True)
    received = []
    raw = client.chat.completions.with_raw_response.create(
        model=PRIMARY, messages=HI, stream=True, extra_body={"models": [FALLBACK]}
    )
    with pytest.raises(openai.APIError):
        for chunk in raw.parse():
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    text = "".join(received)
    assert text and full.startswith(text) and text != full
    events = ledger_events(gateway, raw.headers["x-request-id"])
    assert attempts(events) == [(PRIMARY, "upstream_error")]
    assert names(events)[-3:] == ["StreamSummarized", "UsageMetered", "Failed"]
    assert next(e for e in events if e["event"] == "UsageMetered")["source"] == "estimated"


def test_a_failing_models_circuit_opens_is_skipped_then_closes_after_recovery(make_gateway, sim):
    gateway = make_gateway()
    client = client_of(gateway)
    sim.fault(provider="openai", model=PRIMARY_UPSTREAM, mode="status", status=503)
    opened_by = None
    for _ in range(4):
        raw = client.chat.completions.with_raw_response.create(
            model=PRIMARY, messages=HI, extra_body={"models": [FALLBACK]}
        )
        events = ledger_events(gateway, raw.headers["x-request-id"])
        if "CircuitOpened" in names(events):
            opened_by = events
            break
    assert opened_by is not None
    skipped = client.chat.completions.with_raw_response.create(
        model=PRIMARY, messages=HI, extra_body={"models": [FALLBACK]}
    )
    events = ledger_events(gateway, skipped.headers["x-request-id"])
    routed = next(e for e in events if e["event"] == "Routed")
    assert {"model": PRIMARY, "excluded": "circuit open"}.items() <= routed["candidates"][0].items()
    assert attempts(events) == [(FALLBACK, "ok")]

    sim.clear()
    time.sleep(1.1)  # the cooldown
    probe = client.chat.completions.with_raw_response.create(model=PRIMARY, messages=HI)
    events = ledger_events(gateway, probe.headers["x-request-id"])
    assert attempts(events) == [(PRIMARY, "ok")]
    assert "CircuitClosed" in names(events)


def test_with_redis_a_second_gateway_sees_an_open_circuit(make_gateway, sim, redis_available):
    first = make_gateway(redis_url=REDIS_URL)
    second = make_gateway(redis_url=REDIS_URL)
    sim.fault(provider="openai", model=PRIMARY_UPSTREAM, mode="status", status=503)
    for _ in range(3):
        client_of(first).chat.completions.create(model=PRIMARY, messages=HI, extra_body={"models": [FALLBACK]})
    time.sleep(0.6)  # a sync interval or two
    raw = client_of(second).chat.completions.with_raw_response.create(
        model=PRIMARY, messages=HI, extra_body={"models": [FALLBACK]}
    )
    events = ledger_events(second, raw.headers["x-request-id"])
    assert attempts(events) == [(FALLBACK, "ok")]
    assert next(e for e in events if e["event"] == "Routed")["candidates"][0]["excluded"] == "circuit open"


def test_all_candidates_failing_names_each_attempts_reason(make_gateway, sim):
    gateway = make_gateway()
    sim.fault(provider="openai", mode="status", status=500)
    sim.fault(provider="anthropic", mode="status", status=429, retry_after=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client_of(gateway).chat.completions.create(model=PRIMARY, messages=HI, extra_body={"models": [FALLBACK]})
    error = caught.value
    assert error.status_code == 502 and error.code == "all_candidates_failed"
    assert f"{PRIMARY}: upstream_error (500)" in error.message
    assert f"{FALLBACK}: upstream_rate_limited (429)" in error.message


def test_a_non_retryable_upstream_400_is_not_retried_or_fallen_back(make_gateway, sim):
    gateway = make_gateway()
    sim.fault(provider="openai", model=PRIMARY_UPSTREAM, mode="status", status=400)
    with pytest.raises(openai.BadRequestError) as caught:
        client_of(gateway).chat.completions.with_raw_response.create(
            model=PRIMARY, messages=HI, extra_body={"models": [FALLBACK]}
        )
    events = ledger_events(gateway, caught.value.response.headers["x-request-id"])
    assert attempts(events) == [(PRIMARY, "invalid_request")]
