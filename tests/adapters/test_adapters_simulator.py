"""Each adapter against the provider simulator (simulator/): plain and streaming calls,
what reached the provider, and injected faults (status, disconnect, malformed, hang)."""

from __future__ import annotations

import aiohttp
import pytest

from adapters.base import Target
from adapters.errors import UpstreamError
from adapters.registry import build_adapters

sim_app = pytest.importorskip("simulator.app")

MODELS = {
    "openai": ("gpt-4o-mini", "/v1"),
    "anthropic": ("claude-3-5-haiku-20241022", ""),
    "google": ("gemini-1.5-flash", ""),
}
BODY = {
    "model": "alias",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Once more"},
    ],
    "max_tokens": 40,
    "routing": {"strategy": "cost"},
    "models": ["a"],
}
providers = pytest.mark.parametrize("name", list(MODELS))


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


def target(simulator, name: str, timeout_s: float = 10.0) -> Target:
    model, suffix = MODELS[name]
    return Target(name, model, simulator.url + suffix, "sim-key", timeout_s)


async def last_request(control) -> dict:
    async with control.get("/_sim/requests", params={"last": "1"}) as resp:
        data = await resp.json()
    (entry,) = data["requests"] if isinstance(data, dict) else data
    return entry


async def fault(control, **spec) -> None:
    async with control.post("/_sim/faults", json=spec) as resp:
        assert resp.status < 300, await resp.text()


@providers
async def test_plain_completion(simulator, control, adapters, name):
    completion = await adapters[name].complete(BODY, target(simulator, name))
    assert completion.message["role"] == "assistant" and completion.message["content"]
    assert completion.finish_reason in ("stop", "length")
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens > 0
    sent = (await last_request(control))["body"]
    assert "routing" not in sent and "models" not in sent
    if name == "openai":
        assert sent["model"] == "gpt-4o-mini"
    elif name == "anthropic":
        assert sent["system"] == "Be brief." and sent["max_tokens"] == 40
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    else:
        assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]


@providers
async def test_streaming_completion(simulator, control, adapters, name):
    stream = await adapters[name].stream({**BODY, "stream": True}, target(simulator, name))
    chunks = [chunk async for chunk in stream]
    assert chunks[0]["delta"] == {"role": "assistant", "content": ""} or (
        chunks[0]["delta"]["role"] == "assistant" and chunks[0]["delta"]["content"] == "")
    assert "".join(c["delta"].get("content") or "" for c in chunks)
    assert chunks[-1]["finish_reason"] == stream.finish_reason
    assert stream.finish_reason in ("stop", "length")
    assert all(c["finish_reason"] is None for c in chunks[:-1])
    assert stream.usage is not None and stream.usage.output_tokens > 0
    sent = await last_request(control)
    if name == "openai":
        assert sent["body"]["stream_options"] == {"include_usage": True}
    elif name == "google":
        assert sent["path"].endswith(":streamGenerateContent")
        assert sent["query"] == {"alt": "sse"}


@providers
async def test_rate_limit_fault_is_retryable_with_retry_after(simulator, control, adapters, name):
    await fault(control, provider=name, mode="status", status=429, retry_after=2, count=2)
    for call in (adapters[name].complete, adapters[name].stream):
        with pytest.raises(UpstreamError) as info:
            await call(BODY, target(simulator, name))
        assert (info.value.code, info.value.status, info.value.retry_after) == (
            "upstream_rate_limited", 429, 2.0)


@providers
async def test_disconnect_mid_stream(simulator, control, adapters, name):
    await fault(control, provider=name, mode="disconnect", after_chunks=3, count=1)
    stream = await adapters[name].stream(BODY, target(simulator, name))
    received = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in stream:
            received.append(chunk)
    assert info.value.code == "upstream_error"
    assert received and received[0]["delta"]["role"] == "assistant"


@providers
async def test_malformed_event_mid_stream(simulator, control, adapters, name):
    await fault(control, provider=name, mode="malformed", after_chunks=2, count=1)
    stream = await adapters[name].stream(BODY, target(simulator, name))
    with pytest.raises(UpstreamError) as info:
        async for _ in stream:
            pass
    assert info.value.code == "upstream_error"


@providers
async def test_provider_that_hangs_times_out(simulator, control, adapters, name):
    await fault(control, provider=name, mode="timeout", count=1)
    with pytest.raises(UpstreamError) as info:
        await adapters[name].complete(BODY, target(simulator, name, timeout_s=0.3))
    assert info.value.code == "upstream_timeout"


async def test_anthropic_overloaded_status_and_stream_error(simulator, control, adapters):
    await fault(control, provider="anthropic", mode="status", status=529, count=1)
    with pytest.raises(UpstreamError) as info:
        await adapters["anthropic"].complete(BODY, target(simulator, "anthropic"))
    assert info.value.code == "upstream_overloaded"
    await fault(control, provider="anthropic", mode="status", status=529, after_chunks=2, count=1)
    stream = await adapters["anthropic"].stream(BODY, target(simulator, "anthropic"))
    with pytest.raises(UpstreamError) as info:
        async for _ in stream:
            pass
    assert info.value.code == "upstream_overloaded"
