"""OpenAI translation (pure): what goes upstream, what comes back, stream chunks, errors."""

from __future__ import annotations

import orjson
import pytest
from adapter_helpers import recording, run_stream

from adapters.base import Target, Usage
from adapters.errors import UpstreamError
from adapters.http import HttpClient
from adapters.openai import (
    OpenAIAdapter,
    OpenAIStreamState,
    build_request,
    error_in,
    parse_error,
    parse_response,
)

BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ],
    "temperature": 0.2,
    "stop": "END",
    "routing": {"strategy": "cost"},
    "models": ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"],
}


def test_request_replaces_model_drops_gateway_fields_and_keeps_the_rest():
    payload = build_request(BODY, "gpt-4o-mini-2024-07-18", stream=False)
    assert payload == {
        "model": "gpt-4o-mini-2024-07-18",
        "messages": BODY["messages"],
        "temperature": 0.2,
        "stop": "END",
    }
    assert payload["messages"] is BODY["messages"]  # passed through, never copied
    assert "routing" in BODY and BODY["model"] == "gpt-4o-mini"  # the input is untouched


def test_stream_request_always_asks_for_the_usage_chunk():
    payload = build_request({**BODY, "stream": True}, "gpt-4o", stream=True)
    assert payload["stream"] is True
    assert payload["stream_options"] == {"include_usage": True}
    client_options = {"stream_options": {"include_usage": False, "other": 1}}
    payload = build_request({**BODY, **client_options}, "gpt-4o", stream=True)
    assert payload["stream_options"] == {"include_usage": True, "other": 1}
    assert client_options["stream_options"]["include_usage"] is False


def test_plain_request_never_carries_stream_flags():
    payload = build_request(
        {**BODY, "stream": True, "stream_options": {"include_usage": True}}, "gpt-4o", False
    )
    assert "stream" not in payload and "stream_options" not in payload


def test_tools_and_image_parts_pass_through_unchanged():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]
    payload = build_request({"messages": messages, "tools": tools, "tool_choice": "auto"},
                            "gpt-4o", stream=False)
    assert payload["tools"] is tools and payload["messages"] is messages
    assert payload["tool_choice"] == "auto"


def test_response_message_finish_reason_and_cached_usage():
    completion = parse_response(orjson.loads(recording("openai_chat.json")))
    assert completion.message == {
        "role": "assistant",
        "content": "Hello! How can I help you today?",
        "refusal": None,
    }
    assert completion.finish_reason == "stop"
    assert completion.usage == Usage(input_tokens=1224, output_tokens=9, cached_tokens=1024)


def test_response_with_tool_calls_is_relayed_as_is():
    data = {
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    completion = parse_response(data)
    assert completion.finish_reason == "tool_calls"
    assert completion.message["tool_calls"][0]["id"] == "call_1"
    assert completion.usage == Usage(5, 2, 0)


def test_a_200_whose_body_is_an_error_object_is_classified():
    with pytest.raises(UpstreamError) as info:
        parse_response({"error": {"message": "Rate limit reached", "type": "requests",
                                  "code": "rate_limit_exceeded"}})
    assert info.value.code == "upstream_rate_limited"


def test_response_without_choices_is_malformed():
    with pytest.raises(UpstreamError) as info:
        parse_response({"id": "x", "choices": []})
    assert (info.value.code, info.value.message) == ("upstream_error",
                                                     "malformed response from openai")


def test_stream_chunks_are_the_upstream_choices_and_usage_comes_from_the_last_chunk():
    state = OpenAIStreamState()
    chunks = run_stream(state, recording("openai_stream.sse"))
    assert [c["delta"] for c in chunks] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Hello"},
        {"content": " there!"},
        {},
    ]
    assert [c["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert all(c["index"] == 0 for c in chunks)
    assert state.finish_reason == "stop"
    assert state.usage == Usage(input_tokens=19, output_tokens=3, cached_tokens=0)
    assert state.done
    state.end()  # complete: no error


def test_stream_without_a_role_chunk_gets_one_first():
    raw = b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'
    chunks = run_stream(OpenAIStreamState(), raw)
    assert chunks[0] == {"index": 0, "delta": {"role": "assistant", "content": ""},
                         "finish_reason": None}
    assert chunks[1]["delta"] == {"content": "x"}


def test_stream_cut_before_done_is_an_upstream_error():
    raw = recording("openai_stream.sse")
    state = OpenAIStreamState()
    run_stream(state, raw[: raw.index(b'"finish_reason":"stop"')])
    with pytest.raises(UpstreamError) as info:
        state.end()
    assert info.value.code == "upstream_error"
    assert state.usage is None


def test_stream_error_event_is_classified():
    raw = b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n'
    with pytest.raises(UpstreamError) as info:
        run_stream(OpenAIStreamState(), raw)
    assert info.value.code == "upstream_error"
    assert info.value.message == "The server had an error"


def test_status_errors_map_to_the_taxonomy_with_retry_after():
    body = b'{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests"}}'
    error = parse_error(429, body, 2.5)
    assert (error.code, error.status, error.retry_after) == ("upstream_rate_limited", 429, 2.5)
    assert error.message == "Rate limit reached for gpt-4o"

    body = (b'{"error": {"message": "This model\'s maximum context length is 128000 tokens.",'
            b' "type": "invalid_request_error", "code": "context_length_exceeded"}}')
    assert parse_error(400, body, None).code == "context_length_exceeded"
    body = b'{"error": {"message": "Too long.", "code": "context_length_exceeded"}}'
    assert parse_error(400, body, None).code == "context_length_exceeded"
    assert parse_error(404, b'{"error": {"message": "no such model"}}', None).code == (
        "model_not_found")
    assert parse_error(503, b"<html>Bad gateway</html>", None).code == "upstream_error"
    assert parse_error(503, b"<html>Bad gateway</html>", None).message == (
        "openai returned HTTP 503")


def test_error_in_ignores_normal_bodies():
    assert error_in({"choices": []}) is None


def test_endpoint_strips_trailing_slash_and_uses_bearer_auth():
    adapter = OpenAIAdapter(HttpClient())
    url, headers = adapter.endpoint(
        Target("openai", "gpt-4o", "https://api.openai.com/v1/", "sk-test"), stream=False)
    assert url == "https://api.openai.com/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
