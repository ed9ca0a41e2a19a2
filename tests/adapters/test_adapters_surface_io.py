"""Tool calls, embeddings and images through each adapter's I/O, against the simulator."""

from __future__ import annotations

import base64
from array import array

import aiohttp
import orjson
import pytest
from golden import TOOLS, arguments_by_index

from adapters.base import Target
from adapters.errors import UpstreamError
from adapters.registry import build_adapters

sim_app = pytest.importorskip("simulator.app")

CHAT = {"openai": ("gpt-4o-mini", "/v1"), "anthropic": ("claude-3-5-haiku-20241022", ""),
        "google": ("gemini-1.5-flash", "")}
providers = pytest.mark.parametrize("name", list(CHAT))
ASK = {"model": "x", "messages": [{"role": "user", "content": "What is the weather and the time in Oslo?"}],
       "tools": TOOLS}


@pytest.fixture(scope="module")
def simulator():
    sim = sim_app.start_in_thread(port=0)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
async def control(simulator):
    async with aiohttp.ClientSession(base_url=simulator.url) as session:
        (await session.post("/_sim/reset")).raise_for_status()
        yield session


@pytest.fixture
def adapters(http):
    return build_adapters(http)


def target(simulator, name: str, model: str | None = None) -> Target:
    default, suffix = CHAT[name]
    return Target(name, model or default, simulator.url + suffix, "sim-key", 10.0)


async def requests(control, last: int) -> list[dict]:
    async with control.get("/_sim/requests", params={"last": str(last)}) as resp:
        return (await resp.json())["requests"]


@providers
async def test_parallel_tool_calls_plain_and_streamed_agree(simulator, control, adapters, name):
    adapter = adapters[name]
    completion = await adapter.complete(ASK, target(simulator, name))
    assert completion.finish_reason == "tool_calls"
    assert completion.message["content"] is None
    plain = [(c["function"]["name"], orjson.loads(c["function"]["arguments"]))
             for c in completion.message["tool_calls"]]
    assert [n for n, _ in plain] == ["weather", "time"]  # both named in the question: two parallel calls

    stream = await adapter.stream(ASK, target(simulator, name))
    chunks = [chunk async for chunk in stream]
    streamed = arguments_by_index(chunks)
    assert [(streamed[i]["name"], orjson.loads(streamed[i]["arguments"])) for i in sorted(streamed)] == plain
    assert stream.finish_reason == "tool_calls"
    assert all(streamed[i]["id"] for i in streamed)


@pytest.mark.parametrize(("name", "after"), [("openai", 4), ("anthropic", 4), ("google", 1)])
async def test_stream_cut_inside_a_tool_argument_raises_after_the_partial_call(simulator, control, adapters, name,
                                                                               after):
    async with control.post("/_sim/faults", json={"provider": name, "mode": "disconnect",
                                                  "after_chunks": after}) as resp:
        assert resp.status == 200
    stream = await adapters[name].stream(ASK, target(simulator, name))
    chunks = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in stream:
            chunks.append(chunk)
    assert info.value.code == "upstream_error"
    calls = arguments_by_index(chunks)
    if name == "google":  # Gemini sends each call whole: the first one arrived, the cut one never does
        assert len(calls) == 1 and orjson.loads(calls[0]["arguments"])
    else:  # the first call's arguments were cut short
        assert calls[0]["name"] == "weather" and calls[0]["arguments"]
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(calls[0]["arguments"])


async def test_google_embeddings_batch_by_100_concurrently_and_count_tokens(simulator, control, adapters):
    texts = [f"text number {i}" for i in range(150)]
    answer = await adapters["google"].embed({"input": texts, "dimensions": 8}, target(simulator, "google",
                                                                                        "gemini-embedding-001"))
    assert [item["index"] for item in answer.data] == list(range(150))
    assert all(len(item["embedding"]) == 8 for item in answer.data)
    assert answer.usage.input_tokens == 3 * 150 and not answer.estimated
    sent = await requests(control, 2)
    assert sorted(len(r["body"]["requests"]) for r in sent) == [50, 100]
    assert all(r["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents" for r in sent)
    assert sent[0]["body"]["requests"][0]["outputDimensionality"] == 8


async def test_google_embeddings_without_a_count_are_estimated_and_base64_is_float32(simulator, control, adapters):
    answer = await adapters["google"].embed({"input": "hello world", "encoding_format": "base64"},
                                            target(simulator, "google", "text-embedding-004"))
    assert answer.estimated and answer.usage.input_tokens == 3  # ceil(11 / 4)
    vector = array("f", base64.b64decode(answer.data[0]["embedding"]))
    assert len(vector) == 768


async def test_google_embeddings_refuse_token_ids(simulator, adapters):
    with pytest.raises(UpstreamError, match="embeds text only"):
        await adapters["google"].embed({"input": [1, 2, 3]}, target(simulator, "google", "gemini-embedding-001"))


async def test_google_images_one_call_per_image(simulator, control, adapters):
    answer = await adapters["google"].generate_images({"prompt": "a red fox", "n": 2, "size": "1024x1024"},
                                                      target(simulator, "google", "gemini-2.5-flash-image"))
    assert len(answer.data) == 2 and answer.usage.images == 2
    assert answer.usage.output_tokens == 2 * 1290
    assert base64.b64decode(answer.data[0]["b64_json"]).startswith(b"\x89PNG")
    sent = await requests(control, 2)
    assert [r["path"] for r in sent] == ["/v1beta/models/gemini-2.5-flash-image:generateContent"] * 2
    assert sent[0]["body"]["generationConfig"] == {"responseModalities": ["IMAGE"],
                                                   "imageConfig": {"aspectRatio": "1:1"}}


async def test_openai_images_and_upstream_errors(simulator, control, adapters):
    answer = await adapters["openai"].generate_images(
        {"prompt": "a fox", "response_format": "url"}, target(simulator, "openai", "gpt-image-1"))
    assert answer.data[0]["url"].startswith("data:image/png;base64,")
    assert answer.usage.images == 1 and answer.usage.output_tokens == 1056
    with pytest.raises(UpstreamError) as info:  # DALL-E 3 takes one image per request, as OpenAI says
        await adapters["openai"].generate_images({"prompt": "a fox", "n": 2}, target(simulator, "openai", "dall-e-3"))
    assert (info.value.code, info.value.status) == ("invalid_request", 400)
