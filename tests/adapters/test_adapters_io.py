"""The adapters' I/O path against a fake provider on 127.0.0.1 replaying recorded
native responses: requests sent, streaming, status errors, timeouts, disconnects,
aclose() and connection reuse."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from adapter_helpers import Reply, recording

from adapters.anthropic import AnthropicAdapter
from adapters.base import Target, Usage
from adapters.errors import UpstreamError
from adapters.google import GoogleAdapter
from adapters.http import HttpClient, WireAdapter
from adapters.openai import OpenAIAdapter
from adapters.registry import build_adapters


@dataclass
class Case:
    cls: type[WireAdapter]
    model: str
    base_suffix: str  # what the Target's base_url adds to the server's root
    plain: str
    stream: str
    path: str
    stream_path: str
    key_header: str
    usage: Usage  # what the recorded stream reports
    early_usage: Usage | None  # what it has reported by the time "there" is sent
    error_body: bytes  # a 429 body in the provider's error shape


CASES = {
    "openai": Case(
        OpenAIAdapter, "gpt-4o-mini", "/v1", "openai_chat.json", "openai_stream.sse",
        "/v1/chat/completions", "/v1/chat/completions", "Authorization", Usage(19, 3, 0),
        None,
        b'{"error": {"message": "Rate limit reached", "type": "requests", "code": null}}',
    ),
    "anthropic": Case(
        AnthropicAdapter, "claude-3-5-haiku-20241022", "", "anthropic_message.json",
        "anthropic_stream.sse", "/v1/messages", "/v1/messages", "x-api-key", Usage(35, 15, 10),
        Usage(35, 1, 10),
        b'{"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}}',
    ),
    "google": Case(
        GoogleAdapter, "gemini-1.5-flash", "", "google_generate.json", "google_stream.sse",
        "/v1beta/models/gemini-1.5-flash:generateContent",
        "/v1beta/models/gemini-1.5-flash:streamGenerateContent", "x-goog-api-key", Usage(9, 3, 0),
        Usage(9, 0, 0),
        b'{"error": {"code": 429, "message": "Rate limit reached", "status": "RESOURCE_EXHAUSTED"}}',
    ),
}
KEY = "sk-secret-test-key-0123456789"
BODY = {
    "model": "alias",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "max_tokens": 50,
    "routing": {"strategy": "cost"},
    "models": ["a", "b"],
}
providers = pytest.mark.parametrize("name", list(CASES))


def target(provider, name: str, timeout_s: float = 5.0, base: str | None = None) -> Target:
    case = CASES[name]
    return Target(name, case.model, (base or provider.url) + case.base_suffix + "/", KEY,
                  timeout_s)


def pieces(raw: bytes, size: int = 23) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


async def collect(stream) -> list[dict]:
    return [chunk async for chunk in stream]


def text_of(chunks: list[dict]) -> str:
    return "".join(c["delta"].get("content") or "" for c in chunks)


@providers
async def test_plain_call_sends_native_request_and_parses_answer(provider, http, name):
    case = CASES[name]
    adapter = case.cls(http)
    provider.reply(Reply(body=recording(case.plain)))
    completion = await adapter.complete(BODY, target(provider, name))
    assert completion.message["role"] == "assistant"
    assert completion.message["content"].startswith("Hello")
    assert completion.finish_reason == "stop"
    assert completion.usage.input_tokens > 0
    (seen,) = provider.seen
    assert seen.path == case.path
    assert KEY in seen.headers[case.key_header]
    assert "routing" not in seen.json and "models" not in seen.json
    assert "stream" not in seen.json


@providers
async def test_stream_yields_role_then_content_then_finish_and_reports_usage(provider, http,
                                                                             name):
    case = CASES[name]
    adapter = case.cls(http)
    provider.reply(Reply(chunks=pieces(recording(case.stream))))
    stream = await adapter.stream({**BODY, "stream": True}, target(provider, name))
    chunks = await collect(stream)
    assert chunks[0]["delta"]["role"] == "assistant" and chunks[0]["delta"]["content"] == ""
    assert text_of(chunks) == "Hello there!"
    assert chunks[-1]["finish_reason"] == "stop"
    assert all(c["finish_reason"] is None for c in chunks[:-1])
    assert (stream.finish_reason, stream.usage) == ("stop", case.usage)
    (seen,) = provider.seen
    assert seen.path == case.stream_path
    if name == "google":
        assert seen.query == "alt=sse"
    elif name == "openai":
        assert seen.json["stream_options"] == {"include_usage": True}
    else:
        assert seen.json["stream"] is True
    await stream.aclose()  # after exhaustion: harmless


@providers
async def test_choices_parsed_from_one_read_are_handed_over_together_in_order(provider, http, name):
    """A relay takes `parsed()` after each choice it iterates: the whole recording in
    one read comes out as one choice plus the rest of that read, nothing lost."""
    case = CASES[name]
    adapter = case.cls(http)
    provider.reply(Reply(chunks=pieces(recording(case.stream))))
    one_by_one = await collect(await adapter.stream({**BODY, "stream": True}, target(provider, name)))
    provider.reply(Reply(chunks=[recording(case.stream)]))
    stream = await adapter.stream({**BODY, "stream": True}, target(provider, name))
    groups = []
    async for choice in stream:
        groups.append([choice, *stream.parsed()])
    assert [c for group in groups for c in group] == one_by_one
    assert len(groups) < len(one_by_one)  # parsed together, not one per iteration
    assert stream.parsed() == [] and stream.usage == case.usage


@providers
async def test_exhausted_stream_returns_its_connection_to_the_pool(provider, http, name):
    case = CASES[name]
    adapter = case.cls(http)
    provider.reply(Reply(chunks=pieces(recording(case.stream))),
                   Reply(body=recording(case.plain)))
    await collect(await adapter.stream(BODY, target(provider, name)))
    await adapter.complete(BODY, target(provider, name))
    first, second = provider.seen
    assert first.peer == second.peer  # the same keep-alive connection


@providers
async def test_status_error_is_classified_with_retry_after(provider, http, name):
    case = CASES[name]
    adapter = case.cls(http)
    for call in ("complete", "stream"):
        provider.reply(Reply(status=429, body=case.error_body, headers={"retry-after": "3"}))
        with pytest.raises(UpstreamError) as info:
            await getattr(adapter, call)(BODY, target(provider, name))
        error = info.value
        assert (error.code, error.status, error.retry_after) == ("upstream_rate_limited", 429, 3.0)
        assert error.message == "Rate limit reached"


@providers
async def test_error_messages_never_carry_the_key(provider, http, name):
    adapter = CASES[name].cls(http)
    body = (b'{"error": {"message": "Incorrect API key provided: ' + KEY.encode() +
            b'. Also sk-proj-abc***xyz.", "type": "invalid_request_error", "code": 401}, '
            b'"type": "error"}')
    provider.reply(Reply(status=401, body=body))
    with pytest.raises(UpstreamError) as info:
        await adapter.complete(BODY, target(provider, name))
    assert info.value.code == "upstream_auth_error"
    assert KEY not in info.value.message and "sk-proj" not in info.value.message
    assert "[redacted]" in info.value.message


@providers
async def test_5xx_with_html_body(provider, http, name):
    provider.reply(Reply(status=502, body=b"<html>bad gateway</html>", content_type="text/html"))
    with pytest.raises(UpstreamError) as info:
        await CASES[name].cls(http).complete(BODY, target(provider, name))
    assert (info.value.code, info.value.status) == ("upstream_error", 502)
    assert info.value.message == f"{name} returned HTTP 502"


@providers
async def test_unparsable_body_is_a_malformed_response(provider, http, name):
    provider.reply(Reply(body=b"{not json"))
    with pytest.raises(UpstreamError) as info:
        await CASES[name].cls(http).complete(BODY, target(provider, name))
    assert (info.value.code, info.value.message) == ("upstream_error",
                                                     f"malformed response from {name}")


@providers
async def test_an_answer_larger_than_the_cap_is_malformed_not_buffered(provider, http, name, monkeypatch):
    import adapters.http

    monkeypatch.setattr(adapters.http, "MAX_BODY_BYTES", 64)  # the real cap is 64 MiB
    provider.reply(Reply(body=b'{"pad": "' + b"x" * 500 + b'"}'))
    with pytest.raises(UpstreamError) as info:
        await CASES[name].cls(http).complete(BODY, target(provider, name))
    assert info.value.message == f"malformed response from {name}"


@providers
async def test_200_error_object_on_the_stream_endpoint_is_raised_before_streaming(
    provider, http, name
):
    case = CASES[name]
    provider.reply(Reply(body=case.error_body))  # 200, application/json
    with pytest.raises(UpstreamError) as info:
        await case.cls(http).stream(BODY, target(provider, name))
    assert info.value.code == "upstream_rate_limited"


@providers
async def test_plain_call_times_out(provider, http, name):
    provider.reply(Reply(delay=2.0, body=recording(CASES[name].plain)))
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await CASES[name].cls(http).complete(BODY, target(provider, name, timeout_s=0.2))
    assert info.value.code == "upstream_timeout"
    assert time.monotonic() - started < 1.5


@providers
async def test_stream_times_out_waiting_for_headers(provider, http, name):
    provider.reply(Reply(delay=2.0, chunks=[b""]))
    with pytest.raises(UpstreamError) as info:
        await CASES[name].cls(http).stream(BODY, target(provider, name, timeout_s=0.2))
    assert info.value.code == "upstream_timeout"


@providers
async def test_stream_times_out_when_upstream_stalls_between_reads(provider, http, name):
    case = CASES[name]
    raw = recording(case.stream)
    half = raw[: raw.index(b"there")]
    provider.reply(Reply(chunks=[half], then="stall"))
    stream = await case.cls(http).stream(BODY, target(provider, name, timeout_s=0.3))
    chunks = []
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        async for chunk in stream:
            chunks.append(chunk)
    assert info.value.code == "upstream_timeout"
    assert text_of(chunks) == "Hello"  # what arrived was relayed before the error
    assert time.monotonic() - started < 2.0
    assert stream.usage == case.early_usage  # cut: at most the provider's partial report
    assert stream.finish_reason is None


@providers
async def test_connection_dropped_mid_stream_is_an_upstream_error(provider, http, name):
    case = CASES[name]
    raw = recording(case.stream)
    provider.reply(Reply(chunks=[raw[: raw.index(b"there")]], then="reset"))
    stream = await case.cls(http).stream(BODY, target(provider, name))
    chunks = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in stream:
            chunks.append(chunk)
    assert info.value.code == "upstream_error"
    assert text_of(chunks) == "Hello"
    assert stream.usage == case.early_usage  # cut: at most the provider's partial report
    assert stream.finish_reason is None
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()  # after the error the stream is over


@providers
async def test_stream_ending_cleanly_but_early_is_an_upstream_error(provider, http, name):
    case = CASES[name]
    raw = recording(case.stream)
    provider.reply(Reply(chunks=[raw[: raw.index(b"there")]]))  # then a proper end of body
    stream = await case.cls(http).stream(BODY, target(provider, name))
    with pytest.raises(UpstreamError) as info:
        await collect(stream)
    assert info.value.code == "upstream_error"
    assert "ended before it was complete" in info.value.message


@providers
async def test_malformed_event_data_after_good_events(provider, http, name):
    case = CASES[name]
    raw = recording(case.stream)
    good = raw[: raw.index(b"there")]
    good = good[: max(good.rfind(b"\n\n") + 2, good.rfind(b"\r\n\r\n") + 4)]
    provider.reply(Reply(chunks=[good + b"event: content_block_delta\ndata: {oops\n\n"]))
    stream = await case.cls(http).stream(BODY, target(provider, name))
    chunks = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in stream:
            chunks.append(chunk)
    assert (info.value.code, info.value.message) == ("upstream_error",
                                                     f"malformed response from {name}")
    assert text_of(chunks) == "Hello"  # the good events of the same read came first


@providers
async def test_aclose_drops_the_upstream_connection_promptly_and_is_idempotent(
    provider, http, name
):
    case = CASES[name]
    raw = recording(case.stream)
    provider.reply(Reply(chunks=[raw[: raw.index(b"there")]], then="hang"),
                   Reply(body=recording(case.plain)))
    stream = await case.cls(http).stream(BODY, target(provider, name))
    assert (await stream.__anext__())["delta"]["role"] == "assistant"
    await stream.aclose()
    await asyncio.wait_for(provider.disconnected.wait(), 2.0)
    await stream.aclose()
    assert [c async for c in stream] == []
    # the dropped connection is not reused
    await case.cls(http).complete(BODY, target(provider, name))
    assert provider.seen[0].peer != provider.seen[1].peer


@providers
async def test_aclose_from_another_task_ends_a_pending_read_quietly(provider, http, name):
    case = CASES[name]
    raw = recording(case.stream)
    provider.reply(Reply(chunks=[raw[: raw.index(b"there")]], then="stall"))
    stream = await case.cls(http).stream(BODY, target(provider, name))
    received = []

    async def consume():
        async for chunk in stream:
            received.append(chunk)

    task = asyncio.create_task(consume())
    while text_of(received) != "Hello":
        await asyncio.sleep(0.01)
    await stream.aclose()
    await asyncio.wait_for(task, 2.0)  # ends without an error
    await asyncio.wait_for(provider.disconnected.wait(), 2.0)


@providers
async def test_refused_connection_is_an_upstream_error(http, name):
    adapter = CASES[name].cls(http)
    dead = Target(name, CASES[name].model, "http://127.0.0.1:9", KEY, 2.0)
    for call in (adapter.complete, adapter.stream):
        with pytest.raises(UpstreamError) as info:
            await call(BODY, dead)
        assert info.value.code == "upstream_error"
        assert "connection to" in info.value.message


async def test_redirect_is_not_followed(provider, http):
    provider.reply(Reply(status=302, headers={"Location": "http://example.com/"}))
    with pytest.raises(UpstreamError) as info:
        await OpenAIAdapter(http).complete(BODY, target(provider, "openai"))
    assert (info.value.code, info.value.status) == ("upstream_error", 302)
    assert len(provider.seen) == 1


async def test_http_client_makes_one_session_lazily_and_remakes_it_after_close():
    client = HttpClient()
    session = client.session
    assert client.session is session
    await client.close()
    assert session.closed
    again = client.session
    assert again is not session and not again.closed
    await client.close()
    await client.close()  # idempotent


def test_http_client_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        _ = HttpClient().session


def test_registry_builds_one_adapter_per_provider_sharing_the_client():
    client = HttpClient()
    adapters = build_adapters(client)
    assert sorted(adapters) == ["anthropic", "google", "openai"]
    for name, adapter in adapters.items():
        assert adapter.provider == name
        assert adapter._http is client
