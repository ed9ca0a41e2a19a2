"""Faults injected through `/_sim/faults` reach the official SDKs as the real providers'
failures would: error statuses in each provider's shape, hangs, dropped connections and
broken bodies, before the response or in the middle of a stream."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-20241022"
GOOGLE_MODEL = "gemini-1.5-flash"
MESSAGES = [{"role": "user", "content": "Say something."}]


def chat(sim, model: str = OPENAI_MODEL, **options):
    return sim.openai(**options).chat.completions.create(model=model, messages=MESSAGES)


def test_status_429_is_a_rate_limit_error_with_retry_after_for_every_provider(sim):
    for provider in ("openai", "anthropic", "google"):
        sim.fault(provider=provider, mode="status", status=429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as raised:
        chat(sim)
    assert raised.value.response.headers["retry-after"] == "2"
    assert raised.value.body["code"] == "rate_limit_exceeded"
    with pytest.raises(anthropic.RateLimitError) as raised:
        sim.anthropic().messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=MESSAGES)
    assert raised.value.response.headers["retry-after"] == "2"
    assert raised.value.type == "rate_limit_error"
    assert raised.value.request_id
    with pytest.raises(genai_errors.ClientError) as raised:
        sim.genai().models.generate_content(model=GOOGLE_MODEL, contents="hi")
    assert raised.value.code == 429 and raised.value.status == "RESOURCE_EXHAUSTED"


def test_429_carries_retry_after_one_second_unless_told_otherwise(sim):
    sim.fault(provider="openai", mode="status", status=429, count=1)
    sim.fault(provider="openai", mode="status", status=429, retry_after=None, count=1)
    with pytest.raises(openai.RateLimitError) as first:
        chat(sim)
    with pytest.raises(openai.RateLimitError) as second:
        chat(sim)
    assert first.value.response.headers["retry-after"] == "1"
    assert "retry-after" not in second.value.response.headers


def test_anthropic_529_is_an_overloaded_error(sim):
    sim.fault(provider="anthropic", mode="status", status=529)
    with pytest.raises(anthropic.OverloadedError) as raised:
        sim.anthropic().messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=MESSAGES)
    assert isinstance(raised.value, anthropic.InternalServerError)
    assert raised.value.type == "overloaded_error"


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_server_errors_in_each_sdk(sim, status):
    for provider in ("openai", "anthropic", "google"):
        sim.fault(provider=provider, mode="status", status=status)
    with pytest.raises(openai.InternalServerError):
        chat(sim)
    with pytest.raises(anthropic.InternalServerError) as raised:
        sim.anthropic().messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=MESSAGES)
    assert raised.value.type == "api_error"
    with pytest.raises(genai_errors.ServerError) as raised:
        sim.genai().models.generate_content(model=GOOGLE_MODEL, contents="hi")
    assert raised.value.status == {500: "INTERNAL", 503: "UNAVAILABLE"}[status]


def test_count_limits_a_fault_and_then_requests_succeed(sim):
    fault = sim.fault(provider="openai", mode="status", status=500, count=2)
    assert fault["id"] and fault["count"] == 2
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(sim)
    assert chat(sim).choices[0].message.content
    assert sim.control("GET", "faults")["faults"] == []


def test_a_fault_for_one_model_leaves_other_models_and_providers_alone(sim):
    sim.fault(provider="openai", model="gpt-4o", mode="status", status=503)
    with pytest.raises(openai.InternalServerError):
        chat(sim, model="gpt-4o")
    assert chat(sim, model=OPENAI_MODEL).choices[0].message.content
    assert sim.anthropic().messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=MESSAGES).content


def test_the_first_matching_fault_wins(sim):
    sim.fault(provider="openai", mode="status", status=429, count=1)
    sim.fault(provider="openai", mode="status", status=503, count=1)
    with pytest.raises(openai.RateLimitError):
        chat(sim)
    with pytest.raises(openai.InternalServerError):
        chat(sim)
    assert chat(sim).choices


def test_deleting_faults_clears_them_all(sim):
    sim.fault(provider="openai", mode="status", status=500)
    sim.fault(provider="google", mode="disconnect")
    assert sim.control("DELETE", "faults") == {"cleared": 2}
    assert chat(sim).choices


def test_a_fault_can_be_limited_to_streams(sim):
    sim.fault(provider="openai", mode="status", status=500, stream=True)
    assert chat(sim).choices
    with pytest.raises(openai.InternalServerError):
        list(sim.openai().chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True))


def test_invalid_fault_specs_are_refused(sim):
    for spec in (
        {"provider": "nope", "mode": "status", "status": 500},
        {"provider": "openai", "mode": "explode"},
        {"provider": "openai", "mode": "status"},
        {"provider": "openai", "mode": "status", "status": 500, "count": 0},
    ):
        assert sim.http.post("/_sim/faults", json=spec).status_code == 400


def test_timeout_holds_the_request_until_the_client_gives_up(sim):
    sim.fault(provider="openai", mode="timeout")
    sim.fault(provider="anthropic", mode="timeout")
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        chat(sim, timeout=0.5)
    with pytest.raises(anthropic.APITimeoutError):
        sim.anthropic(timeout=0.5).messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=MESSAGES)
    assert time.monotonic() - started >= 0.9


def test_timeout_after_chunks_stalls_a_stream_midway(sim):
    sim.fault(provider="openai", mode="timeout", after_chunks=3)
    received = []
    with pytest.raises(openai.APITimeoutError):
        for chunk in sim.openai(timeout=0.5).chat.completions.create(
            model=OPENAI_MODEL, messages=MESSAGES, stream=True
        ):
            received.append(chunk)
    assert len(received) == 3


def test_disconnect_drops_a_plain_request_without_a_response(sim):
    sim.fault(provider="openai", mode="disconnect")
    sim.fault(provider="anthropic", mode="disconnect")
    with pytest.raises(openai.APIConnectionError):
        chat(sim)
    with pytest.raises(anthropic.APIConnectionError):
        sim.anthropic().messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=MESSAGES)


def test_disconnect_mid_stream_gives_a_client_error_after_some_chunks(sim):
    for provider in ("openai", "anthropic", "google"):
        sim.fault(provider=provider, mode="disconnect", after_chunks=4)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in sim.openai().chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True):
            received.append(chunk)
    assert len(received) == 4

    events = []
    with pytest.raises(Exception) as raised:  # the SDK lets the transport's error through mid-stream
        for event in sim.anthropic().messages.create(
            model=ANTHROPIC_MODEL, max_tokens=100, messages=MESSAGES, stream=True
        ):
            events.append(event.type)
    assert events == ["message_start", "content_block_start", "content_block_delta"]  # the ping is not yielded
    assert not isinstance(raised.value, AssertionError)

    chunks = []
    with pytest.raises(Exception) as raised:
        for chunk in sim.genai().models.generate_content_stream(model=GOOGLE_MODEL, contents="hi"):
            chunks.append(chunk)
    assert len(chunks) == 4 and not isinstance(raised.value, AssertionError)


def test_disconnect_with_no_chunks_on_a_stream_fails_before_the_response(sim):
    sim.fault(provider="openai", mode="disconnect", stream=True)
    with pytest.raises(openai.APIConnectionError):
        sim.openai().chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True)


def test_malformed_plain_body_is_not_json(sim):
    sim.fault(provider="openai", mode="malformed", count=1)
    response = sim.http.post(
        "/v1/chat/completions",
        json={"model": OPENAI_MODEL, "messages": MESSAGES},
        headers={"Authorization": "Bearer k"},
    )
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_malformed_stream_event_breaks_the_sdk_after_the_good_chunks(sim):
    sim.fault(provider="openai", mode="malformed", after_chunks=2)
    received = []
    with pytest.raises(ValueError):
        for chunk in sim.openai().chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True):
            received.append(chunk)
    assert len(received) == 2
    sim.fault(provider="google", mode="malformed", after_chunks=1)
    with pytest.raises(ValueError):
        list(sim.genai().models.generate_content_stream(model=GOOGLE_MODEL, contents="hi"))


def test_status_after_chunks_sends_the_providers_in_stream_error_event(sim):
    sim.fault(provider="openai", mode="status", status=500, after_chunks=3)
    sim.fault(provider="anthropic", mode="status", status=529, after_chunks=4)
    sim.fault(provider="google", mode="status", status=503, after_chunks=2)
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in sim.openai().chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True):
            received.append(chunk)
    assert len(received) == 3 and raised.value.type == "server_error"
    with pytest.raises(anthropic.APIStatusError) as raised:
        list(sim.anthropic().messages.create(model=ANTHROPIC_MODEL, max_tokens=100, messages=MESSAGES, stream=True))
    assert raised.value.type == "overloaded_error"
    with pytest.raises(genai_errors.ServerError) as raised:
        list(sim.genai().models.generate_content_stream(model=GOOGLE_MODEL, contents="hi"))
    assert raised.value.status == "UNAVAILABLE"
