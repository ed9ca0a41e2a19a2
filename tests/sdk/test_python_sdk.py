"""The Python SDK (`twoapi`, sdk/python) against a real gateway and the simulator:
chat, streams, routing options, models, typed errors, retries, timeouts, the async
client, configuration from the environment."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx
import pytest
import twoapi
from twoapi import AsyncTwoAPI, TwoAPI

from gateway.errors import TAXONOMY
from tests.compat.fixtures import events_of
from tests.conftest import DEMO_KEY

PROMPT = "Name three rivers of Europe, please."


@pytest.fixture
def client(module_gateway):
    with TwoAPI(api_key=DEMO_KEY, base_url=module_gateway.url, max_retries=0) as client:
        yield client


@pytest.fixture
def faults(simulator):
    def add(**fault):
        httpx.post(simulator.url + "/_sim/faults", json=fault).raise_for_status()

    yield add
    httpx.delete(simulator.url + "/_sim/faults").raise_for_status()
    httpx.delete(simulator.url + "/_sim/latency").raise_for_status()


def metered(ledger, request_id: str) -> dict:
    return next(e for e in events_of(ledger, request_id) if e["event"] == "UsageMetered")


def test_chat_returns_content_model_provider_usage_cost_and_request_id(client, module_ledger):
    response = client.chat(PROMPT, model="google/gemini-1.5-flash")
    assert response.content and str(response) == response.content
    assert response.model == "google/gemini-1.5-flash"
    assert response.provider == "google"
    assert response.finish_reason == "stop"
    assert response.request_id.startswith("req_")
    usage = metered(module_ledger, response.request_id)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (usage["input_tokens"],
                                                                          usage["output_tokens"])
    assert response.usage.total_tokens == usage["input_tokens"] + usage["output_tokens"]
    assert isinstance(response.cost, Decimal) and response.cost == Decimal(usage["cost"]) > 0
    assert response.attempts == 1


def test_chat_with_messages_system_and_options_sends_them_to_the_provider(client, simulator):
    client.chat(messages=[{"role": "user", "content": "Hi"}], system="Be brief.", model="openai/gpt-4o-mini",
                temperature=0.2, max_tokens=5, seed=7)
    body = httpx.get(simulator.url + "/_sim/requests", params={"last": 1}).json()["requests"][-1]["body"]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 5, 7)


def test_routing_strategy_and_auto_model(client, module_ledger):
    response = client.chat("Simple question", routing_strategy="cost")
    routed = events_of(module_ledger, response.request_id)[1]
    assert routed["event"] == "Routed" and routed["strategy"] == "cost"
    assert response.routing_strategy == "cost"
    assert response.model == routed["chain"][0]
    quality = client.chat("Hard question", routing_strategy="quality")
    assert quality.routing_strategy == "quality"


def test_fallbacks_take_over_when_the_first_model_fails(client, faults):
    faults(provider="openai", model="gpt-4o-mini", mode="status", status=500)
    response = client.chat(PROMPT, model="openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku"])
    assert response.provider == "anthropic"
    assert response.model == "anthropic/claude-3-5-haiku"
    assert response.attempts and response.attempts >= 2


def test_chat_stream_yields_text_and_exposes_the_final_usage(client, module_ledger):
    stream = client.chat_stream(PROMPT, model="anthropic/claude-3-5-sonnet")
    assert stream.request_id.startswith("req_") and stream.provider == "anthropic"
    chunks = list(stream)
    assert len(chunks) > 1 and all(isinstance(chunk, str) and chunk for chunk in chunks)
    assert stream.content == "".join(chunks)
    assert stream.finish_reason == "stop"
    plain = client.chat(PROMPT, model="anthropic/claude-3-5-sonnet")
    assert stream.content == plain.content
    usage = metered(module_ledger, stream.request_id)
    assert (stream.usage.input_tokens, stream.usage.output_tokens) == (usage["input_tokens"],
                                                                      usage["output_tokens"])
    final = stream.response()
    assert final.content == plain.content and final.model == "anthropic/claude-3-5-sonnet"


def test_stream_closed_early_releases_the_connection_and_is_recorded(client, module_ledger):
    with client.chat_stream(PROMPT, model="openai/gpt-4o-mini") as stream:
        first = next(iter(stream))
        request_id = stream.request_id
    assert first
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        names = [e["event"] for e in events_of(module_ledger, request_id)]
        if names and names[-1] in ("Completed", "Failed"):
            break
        time.sleep(0.05)
    assert "UsageMetered" in names


def test_models_lists_provider_slash_model_ids(client):
    models = client.models()
    ids = {model.id for model in models}
    assert {"openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"} <= ids
    assert all(model.provider == model.id.split("/")[0] for model in models)


def test_typed_errors_carry_code_status_request_id_and_retryable(module_gateway, client, module_ledger):
    with pytest.raises(twoapi.AuthenticationError) as bad_key:
        TwoAPI(api_key="2api_wrong", base_url=module_gateway.url).chat("Hi")
    assert (bad_key.value.code, bad_key.value.status, bad_key.value.retryable) == ("authentication_error", 401, False)

    with pytest.raises(twoapi.ModelNotFoundError) as unknown:
        client.chat("Hi", model="openai/gpt-9")
    error = unknown.value
    assert isinstance(error, twoapi.NotFoundError) and isinstance(error, twoapi.APIError)
    assert (error.code, error.status, error.param, error.retryable) == ("model_not_found", 404, "model", False)
    assert events_of(module_ledger, error.request_id)[-1]["event"] == "Failed"
    assert error.request_id in str(error)

    with pytest.raises(twoapi.InvalidRequestError) as invalid:
        client.chat("Hi", model="openai/gpt-4o-mini", temperature=5)
    assert (invalid.value.param, invalid.value.status) == ("temperature", 400)
    assert isinstance(invalid.value, twoapi.BadRequestError)


def test_retryable_errors_are_retried_and_others_are_not(module_gateway, faults, module_ledger):
    # One upstream 500 with the gateway allowed a single attempt: the client sees a
    # retryable upstream_error, retries, and the second request is served.
    faults(provider="openai", model="gpt-4o-mini", mode="status", status=500, count=1)
    client = TwoAPI(api_key=DEMO_KEY, base_url=module_gateway.url, max_retries=2)
    response = client.chat(PROMPT, model="openai/gpt-4o-mini", max_attempts=1)
    assert response.content

    faults(provider="openai", model="gpt-4o-mini", mode="status", status=500, count=1)
    with pytest.raises(twoapi.UpstreamError) as no_retries:
        TwoAPI(api_key=DEMO_KEY, base_url=module_gateway.url, max_retries=0).chat(
            PROMPT, model="openai/gpt-4o-mini", max_attempts=1)
    assert no_retries.value.retryable and no_retries.value.code == "upstream_error"
    assert no_retries.value.status == 502

    # Not retryable: answered once.
    seen: list[str] = []

    def count(request: httpx.Request) -> None:
        seen.append(request.url.path)

    http = httpx.Client(event_hooks={"request": [count]})
    with pytest.raises(twoapi.ModelNotFoundError):
        TwoAPI(api_key=DEMO_KEY, base_url=module_gateway.url, max_retries=3, http_client=http).chat(
            "Hi", model="openai/gpt-9")
    assert seen == ["/v1/chat/completions"]


def test_rate_limit_retry_after_is_honoured(module_gateway, faults):
    faults(provider="google", mode="status", status=429, retry_after=1, count=1)
    client = TwoAPI(api_key=DEMO_KEY, base_url=module_gateway.url, max_retries=1)
    started = time.monotonic()
    response = client.chat(PROMPT, model="google/gemini-1.5-flash", max_attempts=1)
    assert response.content
    assert time.monotonic() - started >= 0.9


def test_client_timeout_raises_api_timeout_error(module_gateway, faults):
    faults(provider="anthropic", mode="timeout", count=1)
    client = TwoAPI(api_key=DEMO_KEY, base_url=module_gateway.url, timeout=0.5, max_retries=0)
    started = time.monotonic()
    with pytest.raises(twoapi.APITimeoutError) as timed_out:
        client.chat(PROMPT, model="anthropic/claude-3-5-haiku")
    assert time.monotonic() - started < 5
    assert timed_out.value.retryable and isinstance(timed_out.value, twoapi.APIConnectionError)


def test_unreachable_gateway_is_a_connection_error_after_retries():
    client = TwoAPI(api_key=DEMO_KEY, base_url="http://127.0.0.1:9", max_retries=1)
    with pytest.raises(twoapi.APIConnectionError):
        client.chat("Hi")


def test_base_url_and_key_from_the_environment(module_gateway, monkeypatch):
    monkeypatch.setenv("TWOAPI_API_KEY", DEMO_KEY)
    monkeypatch.setenv("TWOAPI_BASE_URL", module_gateway.api_url)  # /v1 is accepted too
    client = TwoAPI()
    assert client.base_url == module_gateway.url
    assert client.chat("Hello!").content
    monkeypatch.delenv("TWOAPI_API_KEY")
    with pytest.raises(twoapi.TwoAPIError, match="TWOAPI_API_KEY"):
        TwoAPI()


def test_embeddings_and_usage_follow_the_gateway(client, module_gateway):
    """Embeddings and /v1/usage belong to other issues (3 and 5); until the gateway
    serves them the SDK reports a typed not_found, afterwards it parses the answer."""
    def served(method: str, path: str) -> bool:  # without a key: 401 if the route exists, else 404
        return httpx.request(method, module_gateway.url + path).status_code != 404

    if served("POST", "/v1/embeddings"):
        result = client.embeddings(["one", "two"])
        assert len(result.embeddings) == 2 and result.request_id
    else:
        with pytest.raises(twoapi.NotFoundError) as missing:
            client.embeddings("one")
        assert missing.value.code == "not_found"
    if served("GET", "/v1/usage"):
        assert isinstance(client.usage(), dict)
    else:
        with pytest.raises(twoapi.NotFoundError):
            client.usage()


def test_the_sdk_taxonomy_mirrors_the_gateway():
    assert set(twoapi.TAXONOMY) == set(TAXONOMY) == set(twoapi.ERROR_CLASSES)
    for code, kind in TAXONOMY.items():
        assert twoapi.TAXONOMY[code] == (kind.status, kind.type, kind.retryable), code


async def test_async_client_chat_stream_models_and_errors(module_gateway, module_ledger):
    async with AsyncTwoAPI(api_key=DEMO_KEY, base_url=module_gateway.url, max_retries=0) as client:
        response = await client.chat("Hello!", model="openai/gpt-4o-mini")
        assert response.content and response.provider == "openai" and response.cost > 0

        stream = client.chat_stream("Hello!", model="openai/gpt-4o-mini")
        chunks = [chunk async for chunk in stream]
        assert "".join(chunks) == response.content
        assert stream.usage.output_tokens == response.usage.output_tokens
        assert metered(module_ledger, stream.request_id)["output_tokens"] == stream.usage.output_tokens

        opened = await client.chat_stream("Hello!", model="google/gemini-1.5-flash")
        assert opened.provider == "google"
        assert (await opened.response()).content

        results = await asyncio.gather(*(client.chat(f"Question {i}") for i in range(5)))
        assert len({r.request_id for r in results}) == 5

        assert "openai/gpt-4o-mini" in {m.id for m in await client.models()}
        with pytest.raises(twoapi.ModelNotFoundError):
            await client.chat("Hi", model="openai/gpt-9")
        with pytest.raises(twoapi.ModelNotFoundError):
            async for _ in client.chat_stream("Hi", model="openai/gpt-9"):
                pass
