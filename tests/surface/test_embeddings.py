"""POST /v1/embeddings through the openai SDK's embeddings.create, for OpenAI and Gemini
models, metered in tokens in the ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import math
from array import array
from decimal import Decimal

import httpx
import openai
import pytest

from adapters.catalog import default_catalog
from ledger.pricing import PriceBook
from simulator.media import embedding
from simulator.text import count_tokens
from tests.conftest import DEMO_KEY
from tests.surface.conftest import client_for, events_of

BOOK = PriceBook.from_table({m.id: m.price for m in default_catalog().models})
TEXTS = ["The quick brown fox.", "Jumps over the lazy dog!"]


@pytest.mark.parametrize(("model", "upstream", "dims"), [
    ("openai/text-embedding-3-small", "text-embedding-3-small", 1536),
    ("google/gemini-embedding-001", "gemini-embedding-001", 3072),
])
def test_embeddings_create_is_answered_and_metered_in_tokens(gateway, simulator, model, upstream, dims):
    raw = client_for(gateway).embeddings.with_raw_response.create(model=model, input=TEXTS)
    answer = raw.parse()  # the SDK asked for base64 and decoded it
    assert answer.model == model and [d.index for d in answer.data] == [0, 1]
    assert len(answer.data[0].embedding) == dims
    assert answer.data[0].embedding == pytest.approx(embedding(upstream, TEXTS[0], dims), abs=1e-7)
    tokens = sum(count_tokens(t) for t in TEXTS)
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (tokens, tokens)

    events = events_of(gateway, raw.headers["x-request-id"])
    assert [e["event"] for e in events] == ["Received", "Routed", "AttemptStarted", "AttemptSucceeded",
                                            "UsageMetered", "Completed"]
    received, usage = events[0], events[4]
    assert (received["endpoint"], received["model"], received["stream"]) == ("embeddings", model, False)
    assert (usage["provider"], usage["model"], usage["input_tokens"], usage["output_tokens"], usage["images"],
            usage["source"]) == (model.split("/")[0], model, tokens, 0, 0, "provider")
    assert Decimal(usage["cost"]) == BOOK.cost(model, tokens, 0, 0) == Decimal(raw.headers["x-2api-cost"]) > 0


@pytest.mark.parametrize("model", ["openai/text-embedding-3-large", "google/text-embedding-004"])
def test_float_format_dimensions_and_a_single_string(client, sim, model):
    answer = client.embeddings.create(model=model, input="hello", dimensions=16, encoding_format="float")
    vector = answer.data[0].embedding
    assert len(vector) == 16 and math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-5)
    sent = sim.last()
    if model.startswith("google"):
        assert sent["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
        assert sent["body"] == {"requests": [{"model": "models/text-embedding-004",
                                              "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 16}]}
    else:
        assert sent["body"] == {"model": "text-embedding-3-large", "input": "hello", "dimensions": 16,
                                "encoding_format": "float"}


def test_base64_answer_is_little_endian_float32(module_gateway, sim):
    response = httpx.post(module_gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {DEMO_KEY}"},
                          json={"model": "google/gemini-embedding-001", "input": ["a"], "encoding_format": "base64",
                                "dimensions": 4})
    encoded = response.json()["data"][0]["embedding"]
    assert list(array("f", base64.b64decode(encoded))) == pytest.approx(
        embedding("gemini-embedding-001", "a", 3072, 4, renormalize=False))


def test_a_provider_without_a_count_is_metered_by_estimate(module_gateway, sim):
    raw = client_for(module_gateway).embeddings.with_raw_response.create(model="google/text-embedding-004",
                                                                         input="abcdefghij")
    usage = next(e for e in events_of(module_gateway, raw.headers["x-request-id"]) if e["event"] == "UsageMetered")
    assert (usage["input_tokens"], usage["source"], usage["cost"]) == (3, "estimated", "0.000000000")


def test_anthropic_models_get_model_not_supported(client, sim, module_gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="anthropic/claude-3-5-sonnet", input="hello")
    assert (caught.value.code, caught.value.param) == ("model_not_supported", "model")
    assert "Anthropic has no such API" in caught.value.message and "openai/text-embedding-3-small" in (
        caught.value.message)
    request_id = caught.value.response.headers["x-request-id"]
    failed = events_of(module_gateway, request_id)[-1]
    assert (failed["event"], failed["error_code"], failed["status"]) == ("Failed", "model_not_supported", 400)
    assert sim.requests(5) == []


def test_a_chat_model_gets_model_not_supported_and_an_unknown_one_model_not_found(client, sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="openai/gpt-4o-mini", input="hello")
    assert caught.value.code == "model_not_supported"
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="openai/text-embedding-9", input="hello")
    assert missing.value.code == "model_not_found"


@pytest.mark.parametrize(("body", "param"), [
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": ["ok", ""]}, "input"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
    ({"input": "x", "temperature": 1}, "temperature"),
    ({}, "input"),
])
def test_bad_requests_are_400s_naming_the_field(module_gateway, sim, body, param):
    response = httpx.post(module_gateway.api_url + "/embeddings", headers={"Authorization": f"Bearer {DEMO_KEY}"},
                          json={"model": "openai/text-embedding-3-small", **body})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_token_ids_go_to_openai_and_are_refused_by_gemini(client, sim):
    assert client.embeddings.create(model="openai/text-embedding-3-small", input=[[1, 2, 3]]).data
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="google/gemini-embedding-001", input=[[1, 2, 3]])
    assert "google embeds text only" in caught.value.message


def test_upstream_failures_are_retried_like_chat(client, sim, module_gateway):
    sim.fault(provider="openai", model="text-embedding-3-small", mode="status", status=503, count=1)
    raw = client.embeddings.with_raw_response.create(model="openai/text-embedding-3-small", input="hi")
    assert raw.headers["x-2api-attempts"] == "2"
    names = [e["event"] for e in events_of(module_gateway, raw.headers["x-request-id"])]
    assert names == ["Received", "Routed", "AttemptStarted", "AttemptFailed", "RetryScheduled", "AttemptStarted",
                     "AttemptSucceeded", "UsageMetered", "Completed"]
