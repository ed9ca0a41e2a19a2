"""Anthropic translation (pure): request mapping, response, stream events, errors."""

from __future__ import annotations

import orjson
import pytest
from adapter_helpers import recording, run_stream

from adapters.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicAdapter,
    AnthropicStreamState,
    build_request,
    parse_error,
    parse_response,
)
from adapters.base import Target, Usage
from adapters.errors import UpstreamError
from adapters.http import HttpClient


def test_system_and_multi_turn_request():
    body = {
        "model": "claude-3-5-sonnet",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 100,
        "stop": "END",
        "routing": {"strategy": "cost"},
        "models": ["x"],
    }
    assert build_request(body, "claude-3-5-sonnet-20241022", stream=False) == {
        "model": "claude-3-5-sonnet-20241022",
        "max_tokens": 100,
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
    }


def test_max_tokens_prefers_max_completion_tokens_and_has_a_default():
    messages = [{"role": "user", "content": "x"}]
    assert build_request({"messages": messages, "max_tokens": 5, "max_completion_tokens": 7},
                         "m", False)["max_tokens"] == 7
    assert build_request({"messages": messages}, "m", False)["max_tokens"] == DEFAULT_MAX_TOKENS


def test_stream_flag_stop_list_and_temperature_above_anthropics_range():
    payload = build_request({"messages": [{"role": "user", "content": "x"}], "stream": True,
                             "stop": ["a", "b"], "temperature": 1.0}, "m", stream=True)
    assert payload["stream"] is True
    assert payload["stop_sequences"] == ["a", "b"]
    assert payload["temperature"] == 1.0
    # above Anthropic's range: refused by name rather than quietly capped
    with pytest.raises(UpstreamError, match="'temperature' is not supported by anthropic"):
        build_request({"messages": [{"role": "user", "content": "x"}], "temperature": 1.7}, "m", stream=True)


def test_consecutive_same_role_messages_are_merged_and_empty_content_dropped():
    body = {"messages": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"},
                                     {"type": "text", "text": ""}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": ""},
        {"role": "user", "content": "three"},
    ]}
    assert build_request(body, "m", False)["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "one"},
            {"type": "text", "text": "two"},
            {"type": "text", "text": "three"},
        ]},
    ]


def test_image_parts_become_image_blocks():
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]}
    assert build_request(body, "m", False)["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_unsupported_content_part_is_an_invalid_request():
    body = {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}
    with pytest.raises(UpstreamError) as info:
        build_request(body, "m", False)
    assert info.value.code == "invalid_request"


def test_tools_tool_calls_and_tool_results():
    body = {
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
                {"id": "toolu_2", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city": "Rome"}'}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text",
                                                                    "text": "21C"}]},
        ],
        "tools": [{"type": "function", "function": {
            "name": "weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    payload = build_request(body, "m", False)
    assert payload["tools"] == [{
        "name": "weather", "description": "Current weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }]
    assert payload["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert payload["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [  # both results in one user turn
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "21C"},
        ]},
    ]


def test_tool_call_with_invalid_json_arguments_is_an_invalid_request():
    body = {"messages": [{"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}
    with pytest.raises(UpstreamError) as info:
        build_request(body, "m", False)
    assert info.value.code == "invalid_request"
    assert "messages[0].tool_calls[0]" in info.value.message


def test_response_text_joined_and_usage_includes_cache_reads_and_writes():
    completion = parse_response(orjson.loads(recording("anthropic_message.json")))
    assert completion.message == {"role": "assistant", "content": "Hello! How can I help?"}
    assert completion.finish_reason == "stop"
    assert completion.usage == Usage(input_tokens=12 + 2000 + 100, output_tokens=8,
                                     cached_tokens=2000)


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), (None, "stop"),
])
def test_stop_reasons(stop_reason, finish_reason):
    data = {"content": [], "stop_reason": stop_reason, "usage": {"input_tokens": 1,
                                                                 "output_tokens": 0}}
    assert parse_response(data).finish_reason == finish_reason


def test_tool_use_response_becomes_tool_calls():
    data = {
        "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }
    completion = parse_response(data)
    assert completion.finish_reason == "tool_calls"
    assert completion.message == {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [{"id": "toolu_9", "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}],
    }


def test_stream_events_to_chunks_with_usage():
    state = AnthropicStreamState()
    chunks = run_stream(state, recording("anthropic_stream.sse"))
    assert chunks == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
        {"index": 0, "delta": {"content": "Hello"}, "finish_reason": None},
        {"index": 0, "delta": {"content": " there!"}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    ]
    assert state.finish_reason == "stop"
    assert state.usage == Usage(input_tokens=35, output_tokens=15, cached_tokens=10)
    assert state.done
    state.end()


def test_stream_tool_use_blocks_become_tool_call_deltas():
    events = [
        ("message_start", {"type": "message_start", "message": {
            "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Checking"}}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
            "type": "input_json_delta", "partial_json": '{"city": '}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
            "type": "input_json_delta", "partial_json": '"Oslo"}'}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 30}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    raw = b"".join(b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data))
                   for name, data in events)
    state = AnthropicStreamState()
    chunks = run_stream(state, raw, piece=7)
    assert [c["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Checking"},
        {"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                         "function": {"name": "weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
        {},
    ]
    assert chunks[-1]["finish_reason"] == "tool_calls"
    assert state.usage == Usage(5, 30, 0)


def test_stream_error_event_overloaded_is_upstream_overloaded():
    raw = recording("anthropic_stream.sse")
    cut = raw.index(b"event: content_block_stop")
    error = (b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error",'
             b' "message": "Overloaded"}}\n\n')
    state = AnthropicStreamState()
    with pytest.raises(UpstreamError) as info:
        run_stream(state, raw[:cut] + error)
    assert (info.value.code, info.value.message) == ("upstream_overloaded", "Overloaded")


def test_stream_cut_before_message_stop_is_an_upstream_error():
    raw = recording("anthropic_stream.sse")
    state = AnthropicStreamState()
    run_stream(state, raw[: raw.index(b"event: message_delta")])
    # the input side came with message_start, so a cut stream still reports it
    assert state.usage == Usage(input_tokens=35, output_tokens=1, cached_tokens=10)
    assert state.finish_reason is None
    with pytest.raises(UpstreamError) as info:
        state.end()
    assert info.value.code == "upstream_error"


def test_status_errors_map_to_the_taxonomy():
    overloaded = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    assert parse_error(529, overloaded, None).code == "upstream_overloaded"
    rate = b'{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests"}}'
    error = parse_error(429, rate, 12.0)
    assert (error.code, error.retry_after, error.status) == ("upstream_rate_limited", 12.0, 429)
    long = (b'{"type":"error","error":{"type":"invalid_request_error",'
            b'"message":"prompt is too long: 210000 tokens > 200000 maximum"}}')
    assert parse_error(400, long, None).code == "context_length_exceeded"
    auth = b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}'
    assert parse_error(401, auth, None).code == "upstream_auth_error"
    assert parse_error(500, b"", None).message == "anthropic returned HTTP 500"


def test_endpoint_and_headers():
    adapter = AnthropicAdapter(HttpClient())
    url, headers = adapter.endpoint(
        Target("anthropic", "m", "https://api.anthropic.com/", "sk-ant-x"), stream=True)
    assert url == "https://api.anthropic.com/v1/messages"
    assert headers["x-api-key"] == "sk-ant-x"
    assert headers["anthropic-version"] == "2023-06-01"
