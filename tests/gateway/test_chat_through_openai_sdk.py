"""The official openai SDK, pointed at the gateway, chats with every provider; each
request lands in the ledger with the usage the provider reported."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from adapters.catalog import default_catalog
from ledger.ids import parse_request_id
from ledger.pricing import PriceBook
from tests.conftest import DEMO_KEY

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"]
SYSTEM = "You are terse."
PROMPT = "Name three rivers of Europe, please."
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
PRICE_BOOK = PriceBook.from_table({m.id: m.price for m in default_catalog().models})


def native_usage(simulator_url: str, model_id: str) -> tuple[int, int, str]:
    """Ask the simulator directly, through the provider's own SDK, what this request
    costs in tokens and what it answers: the reference the gateway must match."""
    model = default_catalog().find(model_id)
    assert model is not None
    if model.provider == "openai":
        client = openai.OpenAI(base_url=simulator_url + "/v1", api_key="sim-key", max_retries=0)
        reply = client.chat.completions.create(model=model.upstream, messages=MESSAGES)
        return reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.choices[0].message.content
    if model.provider == "anthropic":
        client = anthropic.Anthropic(base_url=simulator_url, api_key="sim-key", max_retries=0)
        message = client.messages.create(
            model=model.upstream, system=SYSTEM, max_tokens=4096, messages=[{"role": "user", "content": PROMPT}]
        )
        return message.usage.input_tokens, message.usage.output_tokens, message.content[0].text
    client = genai.Client(api_key="sim-key", http_options=genai_types.HttpOptions(base_url=simulator_url))
    response = client.models.generate_content(
        model=model.upstream,
        contents=PROMPT,
        config=genai_types.GenerateContentConfig(system_instruction=SYSTEM),
    )
    usage = response.usage_metadata
    return usage.prompt_token_count, usage.candidates_token_count, response.text


def gateway_client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_url, api_key=DEMO_KEY, max_retries=0)


def events_of(ledger, request_id: str) -> list[dict]:
    return ledger.event_dicts(parse_request_id(request_id))


@pytest.mark.parametrize("model", MODELS)
def test_plain_chat_is_answered_and_metered_as_the_provider_reported(gateway, ledger_of, simulator, model):
    raw = gateway_client(gateway).chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    completion = raw.parse()
    input_tokens, output_tokens, text = native_usage(simulator.url, model)

    assert completion.choices[0].message.content == text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == model
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (input_tokens, output_tokens)
    assert raw.headers["x-2api-provider"] == model.split("/")[0]

    events = events_of(ledger_of, raw.headers["x-request-id"])
    names = [e["event"] for e in events]
    assert names == ["Received", "Routed", "AttemptStarted", "AttemptSucceeded", "UsageMetered", "Completed"]
    usage = events[4]
    assert (usage["input_tokens"], usage["output_tokens"], usage["source"]) == (input_tokens, output_tokens, "provider")
    expected_cost = PRICE_BOOK.cost(model, input_tokens, output_tokens, 0)
    assert Decimal(usage["cost"]) == expected_cost == Decimal(raw.headers["x-2api-cost"])
    assert usage["price_book"] == PRICE_BOOK.version


@pytest.mark.parametrize("model", MODELS)
def test_streamed_chat_relays_chunks_and_meters_the_final_usage(gateway, ledger_of, simulator, model):
    raw = gateway_client(gateway).chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    input_tokens, output_tokens, text = native_usage(simulator.url, model)

    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == text
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (input_tokens, output_tokens)

    events = events_of(ledger_of, raw.headers["x-request-id"])
    names = [e["event"] for e in events]
    assert names == [
        "Received", "Routed", "AttemptStarted", "AttemptSucceeded", "StreamSummarized", "UsageMetered", "Completed",
    ]
    summary, usage = events[4], events[5]
    assert summary["client_disconnected"] is False
    assert summary["finish_reason"] == "stop"
    assert summary["chunks"] == len([c for c in chunks if c.choices])
    assert (usage["input_tokens"], usage["output_tokens"], usage["source"]) == (input_tokens, output_tokens, "provider")


@pytest.mark.parametrize("model", MODELS)
def test_stream_without_usage_requested_is_still_metered_from_the_provider(gateway, ledger_of, simulator, model):
    raw = gateway_client(gateway).chat.completions.with_raw_response.create(model=model, messages=MESSAGES, stream=True)
    chunks = list(raw.parse())
    assert all(chunk.usage is None for chunk in chunks)
    input_tokens, output_tokens, _ = native_usage(simulator.url, model)
    usage = next(e for e in events_of(ledger_of, raw.headers["x-request-id"]) if e["event"] == "UsageMetered")
    assert (usage["input_tokens"], usage["output_tokens"], usage["source"]) == (input_tokens, output_tokens, "provider")


def test_models_lists_configured_models_by_provider_slash_name(gateway):
    ids = {model.id for model in gateway_client(gateway).models.list()}
    assert set(MODELS) <= ids
    assert all("/" in model_id for model_id in ids)


def test_every_response_carries_a_request_id_that_the_ledger_knows(gateway, ledger_of):
    client = gateway_client(gateway)
    first = client.chat.completions.with_raw_response.create(model=MODELS[0], messages=MESSAGES)
    second = client.chat.completions.with_raw_response.create(model=MODELS[0], messages=MESSAGES)
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2
    for request_id in ids:
        assert request_id.startswith("req_")
        assert events_of(ledger_of, request_id)[0]["tenant"] == "demo"


def test_ledger_holds_no_prompt_or_completion_text(gateway, ledger_of):
    raw = gateway_client(gateway).chat.completions.with_raw_response.create(model=MODELS[1], messages=MESSAGES)
    text = raw.parse().choices[0].message.content
    stored = repr(events_of(ledger_of, raw.headers["x-request-id"]))
    assert PROMPT not in stored and SYSTEM not in stored and text not in stored
