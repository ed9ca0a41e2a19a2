"""The official `anthropic` SDK against the gateway's Anthropic-compatible
`POST /v1/messages`: plain and streaming, reaching OpenAI, Gemini and Anthropic
models, routed, metered and recorded like chat requests. And the other way round:
the official `openai` SDK reaching an Anthropic model."""

from __future__ import annotations

import time
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from adapters.catalog import default_catalog
from ledger.pricing import PriceBook
from tests.compat.fixtures import events_of
from tests.conftest import DEMO_KEY

SYSTEM = "You are terse."
PROMPT = "Name three rivers of Europe, please."
CROSS_MODELS = ["openai/gpt-4o-mini", "google/gemini-1.5-flash"]
ALL_MODELS = [*CROSS_MODELS, "anthropic/claude-3-5-sonnet"]
PRICE_BOOK = PriceBook.from_table({m.id: m.price for m in default_catalog().models})


def claude(gateway, **options) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=DEMO_KEY, max_retries=0, **options)


def reference(gateway, model: str) -> tuple[str, int, int]:
    """The same conversation through /v1/chat/completions: text and usage to match."""
    client = openai.OpenAI(base_url=gateway.api_url, api_key=DEMO_KEY, max_retries=0)
    reply = client.chat.completions.create(
        model=model, max_tokens=256,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
    )
    return reply.choices[0].message.content, reply.usage.prompt_tokens, reply.usage.completion_tokens


@pytest.mark.parametrize("model", ALL_MODELS)
def test_messages_create_reaches_the_routed_model_and_is_metered(module_gateway, module_ledger, model):
    raw = claude(module_gateway).messages.with_raw_response.create(
        model=model, max_tokens=256, system=SYSTEM, messages=[{"role": "user", "content": PROMPT}]
    )
    message = raw.parse()
    text, input_tokens, output_tokens = reference(module_gateway, model)

    assert message.type == "message" and message.role == "assistant"
    assert message.model == model
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == text
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (input_tokens, output_tokens)
    assert raw.headers["x-2api-provider"] == model.split("/")[0]
    assert message._request_id == raw.headers["x-request-id"]

    events = events_of(module_ledger, raw.headers["x-request-id"])
    assert [e["event"] for e in events] == [
        "Received", "Routed", "AttemptStarted", "AttemptSucceeded", "UsageMetered", "Completed",
    ]
    assert events[0]["endpoint"] == "messages" and events[0]["tenant"] == "demo"
    usage = events[4]
    assert (usage["provider"], usage["model"]) == (model.split("/")[0], model)
    assert (usage["input_tokens"], usage["output_tokens"], usage["source"]) == (input_tokens, output_tokens, "provider")
    assert Decimal(usage["cost"]) == PRICE_BOOK.cost(model, input_tokens, output_tokens, 0)
    assert Decimal(raw.headers["x-2api-cost"]) == Decimal(usage["cost"])


@pytest.mark.parametrize("model", ALL_MODELS)
def test_messages_stream_helper_yields_text_and_final_usage(module_gateway, module_ledger, model):
    client = claude(module_gateway)
    with client.messages.stream(
        model=model, max_tokens=256, system=SYSTEM, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    text, input_tokens, output_tokens = reference(module_gateway, model)

    assert streamed == text == final.content[0].text
    assert final.model == model
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (input_tokens, output_tokens)

    events = events_of(module_ledger, request_id)
    names = [e["event"] for e in events]
    assert names == [
        "Received", "Routed", "AttemptStarted", "AttemptSucceeded", "StreamSummarized", "UsageMetered", "Completed",
    ]
    assert events[0]["endpoint"] == "messages" and events[0]["stream"] is True
    assert (events[5]["input_tokens"], events[5]["output_tokens"], events[5]["source"]) == (
        input_tokens, output_tokens, "provider")


def test_messages_create_stream_true_gives_anthropic_events_in_order(module_gateway):
    events = list(claude(module_gateway).messages.create(
        model="google/gemini-1.5-flash", max_tokens=256, stream=True,
        messages=[{"role": "user", "content": PROMPT}],
    ))
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[0].message.model == "google/gemini-1.5-flash"
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].usage.output_tokens > 0


def test_max_tokens_stop_reason_and_stop_sequences(module_gateway):
    client = claude(module_gateway)
    short = client.messages.create(model="openai/gpt-4o-mini", max_tokens=3,
                                   messages=[{"role": "user", "content": PROMPT}])
    assert short.stop_reason == "max_tokens"
    assert short.usage.output_tokens <= 3
    full = client.messages.create(model="openai/gpt-4o-mini", max_tokens=256,
                                  messages=[{"role": "user", "content": PROMPT}])
    word = full.content[0].text.split()[3]
    cut = client.messages.create(model="openai/gpt-4o-mini", max_tokens=256, stop_sequences=[word],
                                 messages=[{"role": "user", "content": PROMPT}])
    assert word not in cut.content[0].text
    assert full.content[0].text.startswith(cut.content[0].text.rstrip())


def test_tools_and_tool_results_are_translated_for_an_openai_model(module_gateway, simulator):
    claude(module_gateway).messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=256,
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "user-7"},
        tools=[{"name": "get_weather", "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C and sunny"},
                {"type": "text", "text": "Thanks; and in one word?"},
            ]},
        ],
    )
    sent = httpx.get(simulator.url + "/_sim/requests", params={"last": 1}).json()["requests"][-1]
    assert sent["provider"] == "openai"
    body = sent["body"]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is False
    assert body["user"] == "user-7"
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert body["messages"][0]["content"] == SYSTEM
    assistant = body["messages"][2]
    assert assistant["tool_calls"][0]["id"] == "toolu_1"
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C and sunny"}


def test_image_blocks_become_image_parts(module_gateway, simulator):
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    claude(module_gateway).messages.create(
        model="openai/gpt-4o-mini", max_tokens=64,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}},
            {"type": "text", "text": "What is this?"},
        ]}],
    )
    body = httpx.get(simulator.url + "/_sim/requests", params={"last": 1}).json()["requests"][-1]["body"]
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64," + pixel}}
    assert parts[1] == {"type": "text", "text": "What is this?"}


def test_auto_routing_by_cost_through_extra_body(module_gateway, module_ledger):
    raw = claude(module_gateway).messages.with_raw_response.create(
        model="auto", max_tokens=64, messages=[{"role": "user", "content": "Simple question"}],
        extra_body={"routing": {"strategy": "cost"}},
    )
    assert raw.headers["x-2api-routing-strategy"] == "cost"
    routed = events_of(module_ledger, raw.headers["x-request-id"])[1]
    assert routed["event"] == "Routed" and routed["strategy"] == "cost"
    assert raw.parse().model == routed["chain"][0]


def test_bearer_authorization_works_too(module_gateway):
    client = anthropic.Anthropic(base_url=module_gateway.url, auth_token=DEMO_KEY, max_retries=0)
    message = client.messages.create(model="openai/gpt-4o-mini", max_tokens=32,
                                     messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].text


def test_errors_come_as_anthropic_errors(module_gateway, module_ledger):
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        anthropic.Anthropic(base_url=module_gateway.url, api_key="2api_nope", max_retries=0).messages.create(
            model="openai/gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": "Hi"}])
    assert bad_key.value.body["error"]["type"] == "authentication_error"

    client = claude(module_gateway)
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client.messages.create(model="openai/gpt-9", max_tokens=8, messages=[{"role": "user", "content": "Hi"}])
    assert unknown.value.body["error"]["code"] == "model_not_found"
    assert unknown.value.response.headers["x-should-retry"] == "false"
    request_id = unknown.value.response.headers["x-request-id"]
    events = events_of(module_ledger, request_id)
    assert [e["event"] for e in events] == ["Received", "Failed"]
    assert events[0]["endpoint"] == "messages"

    with pytest.raises(anthropic.BadRequestError) as top_k:
        client.messages.create(model="openai/gpt-4o-mini", max_tokens=8, extra_body={"top_k": 5},
                               messages=[{"role": "user", "content": "Hi"}])
    assert top_k.value.body["error"]["type"] == "invalid_request_error"
    assert "top_k" in top_k.value.body["error"]["message"]
    refused = events_of(module_ledger, top_k.value.response.headers["x-request-id"])
    assert [e["event"] for e in refused] == ["Received", "Failed"]
    assert refused[0]["endpoint"] == "messages"

    with pytest.raises(anthropic.BadRequestError) as unknown_field:
        client.messages.create(model="openai/gpt-4o-mini", max_tokens=8,
                               messages=[{"role": "user", "content": "Hi"}], extra_body={"temprature": 1})
    assert unknown_field.value.body["error"]["message"].endswith("temprature")


def test_upstream_failure_before_the_stream_is_an_anthropic_error_event_or_status(module_gateway, simulator):
    httpx.post(simulator.url + "/_sim/faults", json={"provider": "openai", "mode": "status", "status": 400,
                                                     "count": 1}).raise_for_status()
    try:
        with pytest.raises(anthropic.BadRequestError):
            claude(module_gateway).messages.create(model="openai/gpt-4o-mini", max_tokens=8,
                                                   messages=[{"role": "user", "content": "Hi"}])
    finally:
        httpx.delete(simulator.url + "/_sim/faults")


def test_a_stream_cut_after_its_first_chunk_ends_with_an_error_event(module_gateway, simulator):
    httpx.post(simulator.url + "/_sim/faults", json={"provider": "google", "mode": "status", "status": 500,
                                                     "after_chunks": 3, "count": 1}).raise_for_status()
    try:
        with pytest.raises(anthropic.APIStatusError):  # noqa: SIM117
            with claude(module_gateway).messages.stream(
                model="google/gemini-1.5-flash", max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
            ) as stream:
                for _ in stream.text_stream:
                    pass
    finally:
        httpx.delete(simulator.url + "/_sim/faults")


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_reaches_an_anthropic_model(module_gateway, module_ledger, stream):
    """The other direction: an OpenAI-SDK request served by Claude."""
    client = openai.OpenAI(base_url=module_gateway.api_url, api_key=DEMO_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="anthropic/claude-3-5-haiku", messages=[{"role": "user", "content": PROMPT}], stream=stream
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content
    assert text
    assert raw.headers["x-2api-provider"] == "anthropic"
    events = events_of(module_ledger, raw.headers["x-request-id"])
    assert events[0]["endpoint"] == "chat.completions"
    metered = next(e for e in events if e["event"] == "UsageMetered")
    assert metered["provider"] == "anthropic" and metered["source"] == "provider"


def test_a_client_leaving_a_messages_stream_is_recorded_as_a_disconnect(module_gateway, module_ledger, simulator):
    httpx.post(simulator.url + "/_sim/latency", json={"provider": "google", "ttft_ms": 0,
                                                      "tokens_per_s": 20}).raise_for_status()
    try:
        body = {"model": "google/gemini-1.5-flash", "max_tokens": 256, "stream": True,
                "messages": [{"role": "user", "content": PROMPT}]}
        with httpx.stream("POST", module_gateway.url + "/v1/messages", json=body,
                          headers={"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"}) as response:
            request_id = response.headers["x-request-id"]
            first = next(response.iter_lines())
            assert first == "event: message_start"
        deadline = time.monotonic() + 10
        while True:
            events = events_of(module_ledger, request_id)
            if events and events[-1]["event"] == "Failed":
                break
            assert time.monotonic() < deadline, [e["event"] for e in events]
            time.sleep(0.05)
        summary = next(e for e in events if e["event"] == "StreamSummarized")
        assert summary["client_disconnected"] is True
        assert events[-1]["error_code"] == "client_disconnected"
        metered = next(e for e in events if e["event"] == "UsageMetered")
        assert metered["source"] == "estimated"
    finally:
        httpx.delete(simulator.url + "/_sim/latency")
