"""The official `openai` Python SDK, unchanged, against the gateway. Chat, streams and
models per provider are in tests/gateway/test_chat_through_openai_sdk.py; here: the
async client, tools as they reach each provider, the 2api headers, typed errors, and
embeddings / images (served, or a typed 404 while their issue is open)."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.conftest import DEMO_KEY

MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]


def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_url, api_key=DEMO_KEY, max_retries=0)


def last_native_request(simulator) -> dict:
    return httpx.get(simulator.url + "/_sim/requests", params={"last": 1}).json()["requests"][-1]


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"])
def test_tools_reach_each_provider_in_its_own_format(module_gateway, simulator, model):
    reply = client(module_gateway).chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS,
                                                           tool_choice="auto")
    assert reply.choices[0].message is not None
    sent = last_native_request(simulator)
    assert sent["provider"] == model.split("/")[0]
    body = sent["body"]
    if sent["provider"] == "openai":
        assert body["tools"] == TOOLS
    elif sent["provider"] == "anthropic":
        assert body["tools"][0]["name"] == "get_weather"
        assert body["tools"][0]["input_schema"] == TOOLS[0]["function"]["parameters"]
    else:
        declaration = body["tools"][0]["functionDeclarations"][0]
        assert declaration["name"] == "get_weather"


def test_2api_headers_and_typed_errors(module_gateway):
    raw = client(module_gateway).chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES, extra_body={"routing": {"strategy": "latency"}})
    assert raw.headers["x-2api-routing-strategy"] == "latency"
    assert raw.headers["x-2api-attempts"] == "1"
    assert raw.headers["x-2api-model"] == raw.parse().model
    assert raw.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.NotFoundError) as missing:
        client(module_gateway).chat.completions.create(model="openai/gpt-9", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as invalid:
        client(module_gateway).chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES,
                                                       extra_body={"temprature": 1})
    assert invalid.value.param == "temprature"


def test_async_client_plain_and_stream(module_gateway):
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=module_gateway.api_url, api_key=DEMO_KEY, max_retries=0) as aclient:
            plain = await aclient.chat.completions.create(model="google/gemini-1.5-flash", messages=MESSAGES)
            stream = await aclient.chat.completions.create(model="google/gemini-1.5-flash", messages=MESSAGES,
                                                           stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return plain.choices[0].message.content, text

    plain, streamed = asyncio.run(run())
    assert plain and plain == streamed


def _served(gateway, path: str) -> bool:
    return httpx.post(gateway.url + path).status_code != 404  # 401 without a key when the route exists


def test_embeddings_through_the_sdk(module_gateway):
    call = lambda: client(module_gateway).embeddings.create(  # noqa: E731
        model="openai/text-embedding-3-small", input=["one", "two"])
    if _served(module_gateway, "/v1/embeddings"):
        result = call()
        assert len(result.data) == 2 and result.data[0].embedding
    else:
        with pytest.raises(openai.NotFoundError):
            call()


def test_images_through_the_sdk(module_gateway):
    call = lambda: client(module_gateway).images.generate(model="openai/dall-e-3", prompt="a red circle")  # noqa: E731
    if _served(module_gateway, "/v1/images/generations"):
        assert call().data
    else:
        with pytest.raises(openai.NotFoundError):
            call()
