"""Gemini translation (pure): request mapping, response, stream chunks, errors."""

from __future__ import annotations

import orjson
import pytest
from adapter_helpers import recording, run_stream

from adapters.base import Target, Usage
from adapters.errors import UpstreamError
from adapters.google import (
    GoogleAdapter,
    GoogleStreamState,
    build_request,
    error_in,
    parse_error,
    parse_response,
)
from adapters.http import HttpClient


def test_system_multi_turn_and_generation_config():
    body = {
        "model": "gemini-1.5-flash",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Bye"}]},
        ],
        "temperature": 0.3,
        "top_p": 0.8,
        "max_tokens": 64,
        "stop": "END",
        "routing": {"strategy": "latency"},
        "models": ["x"],
        "stream": True,
    }
    assert build_request(body, "gemini-1.5-flash", stream=True) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello."}]},
            {"role": "user", "parts": [{"text": "Bye"}]},
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "generationConfig": {"temperature": 0.3, "topP": 0.8, "maxOutputTokens": 64,
                             "stopSequences": ["END"]},
    }


def test_minimal_request_has_no_empty_sections():
    assert build_request({"messages": [{"role": "user", "content": "x"}]}, "m", False) == {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
    }


def test_consecutive_same_role_merged_and_empty_content_dropped():
    body = {"messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "b"},
        {"role": "developer", "content": ""},
    ], "max_completion_tokens": 9, "max_tokens": 3}
    payload = build_request(body, "m", False)
    assert payload["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]
    assert "systemInstruction" not in payload
    assert payload["generationConfig"] == {"maxOutputTokens": 9}


def test_image_parts_and_json_mode():
    body = {
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGR="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png?x=1"}},
        ]}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "r", "schema": {"type": "object"}}},
    }
    payload = build_request(body, "m", False)
    assert payload["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/webp", "data": "UklGR="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png?x=1"}},
    ]
    # a schema that says only "an object" has no Gemini Schema (which wants properties):
    # JSON mode alone is the faithful equivalent
    assert payload["generationConfig"] == {"responseMimeType": "application/json"}


def test_tools_calls_and_results_use_function_names():
    body = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_a", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                 "extra_content": {"google": {"thought_signature": "c2ln"}}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 18}'},
            {"role": "tool", "tool_call_id": "call_a", "content": "plain text"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "weather", "description": "Weather",
            "parameters": {"type": "object", "additionalProperties": False}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
    }
    payload = build_request(body, "m", False)
    assert payload["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "weather",
                                                      "args": {"city": "Paris"}},
                                     "thoughtSignature": "c2ln"}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "weather", "response": {"temp": 18}}},
            {"functionResponse": {"name": "weather", "response": {"output": "plain text"}}},
        ]},
    ]
    # an object without properties is "no parameters": Gemini rejects an empty OBJECT
    assert payload["tools"] == [{"functionDeclarations": [{"name": "weather", "description": "Weather"}]}]
    assert payload["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["weather"]}}


def test_response_text_and_usage_with_cached_and_thought_tokens():
    completion = parse_response(orjson.loads(recording("google_generate.json")))
    assert completion.message == {"role": "assistant", "content": "Hello! How can I help?"}
    assert completion.finish_reason == "stop"
    assert completion.usage == Usage(input_tokens=1040, output_tokens=7 + 16, cached_tokens=1024)


@pytest.mark.parametrize(("reason", "finish_reason"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"), ("OTHER", "stop"),
])
def test_finish_reasons(reason, finish_reason):
    data = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert parse_response(data).finish_reason == finish_reason


def test_safety_stop_without_content():
    completion = parse_response({"candidates": [{"finishReason": "SAFETY"}],
                                 "usageMetadata": {"promptTokenCount": 4}})
    assert completion.message == {"role": "assistant", "content": ""}
    assert completion.finish_reason == "content_filter"
    assert completion.usage == Usage(4, 0, 0)


def test_blocked_prompt_is_content_filtered():
    with pytest.raises(UpstreamError) as info:
        parse_response({"promptFeedback": {"blockReason": "SAFETY"},
                        "usageMetadata": {"promptTokenCount": 4}})
    assert info.value.code == "content_filtered"


def test_thought_parts_are_not_the_answer_and_function_calls_become_tool_calls():
    data = {"candidates": [{"content": {"parts": [
        {"text": "thinking...", "thought": True},
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}},
         "thoughtSignature": "c2ln"},
    ]}, "finishReason": "STOP"}]}
    completion = parse_response(data)
    assert completion.finish_reason == "tool_calls"
    assert completion.message["content"] is None
    (call,) = completion.message["tool_calls"]
    assert call["id"].startswith("call_") and len(call["id"]) > 10
    assert call["type"] == "function"
    assert call["function"] == {"name": "weather", "arguments": '{"city":"Oslo"}'}
    assert call["extra_content"] == {"google": {"thought_signature": "c2ln"}}


def test_stream_chunks_finish_and_usage():
    state = GoogleStreamState()
    chunks = run_stream(state, recording("google_stream.sse"), piece=5)
    assert chunks == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
        {"index": 0, "delta": {"content": "Hello"}, "finish_reason": None},
        {"index": 0, "delta": {"content": " there!"}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    ]
    assert state.usage == Usage(input_tokens=9, output_tokens=3, cached_tokens=0)
    state.end()


def test_stream_text_and_finish_in_one_event():
    raw = (b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":'
           b'"MAX_TOKENS"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1}}\r\n\r\n')
    state = GoogleStreamState()
    assert [(c["delta"], c["finish_reason"]) for c in run_stream(state, raw)] == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hi"}, None),
        ({}, "length"),
    ]
    assert state.usage == Usage(3, 1, 0)


def test_stream_cut_before_finish_is_an_upstream_error():
    raw = recording("google_stream.sse")
    state = GoogleStreamState()
    run_stream(state, raw[: raw.index(b'"finishReason"')])
    assert state.usage == Usage(input_tokens=9, output_tokens=0, cached_tokens=0)  # prompt known
    assert state.finish_reason is None
    with pytest.raises(UpstreamError) as info:
        state.end()
    assert info.value.code == "upstream_error"


def test_stream_error_object_is_classified():
    raw = (b'data: {"error": {"code": 503, "message": "The model is overloaded.",'
           b' "status": "UNAVAILABLE"}}\r\n\r\n')
    with pytest.raises(UpstreamError) as info:
        run_stream(GoogleStreamState(), raw)
    assert (info.value.code, info.value.status) == ("upstream_error", 503)


def test_status_errors_map_to_the_taxonomy():
    key = (b'{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",'
           b' "status": "INVALID_ARGUMENT", "details": [{"@type": '
           b'"type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}')
    assert parse_error(400, key, None).code == "upstream_auth_error"
    quota = (b'{"error": {"code": 429, "message": "Resource has been exhausted",'
             b' "status": "RESOURCE_EXHAUSTED", "details": [{"@type": '
             b'"type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "31s"}]}}')
    error = parse_error(429, quota, None)
    assert (error.code, error.retry_after) == ("upstream_rate_limited", 31.0)
    assert parse_error(429, quota, 5.0).retry_after == 5.0  # the header wins
    too_long = (b'{"error": {"code": 400, "message": "The input token count (3000000) exceeds'
                b' the maximum number of tokens allowed (2097152).", "status": "INVALID_ARGUMENT"}}')
    assert parse_error(400, too_long, None).code == "context_length_exceeded"
    assert parse_error(404, b'[{"error": {"code": 404, "message": "models/x is not found"}}]',
                       None).code == "model_not_found"
    assert parse_error(502, b"<html></html>", None).message == "google returned HTTP 502"


def test_error_in_uses_rpc_status_when_there_is_no_code():
    error = error_in({"error": {"message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
    assert error is not None and error.code == "upstream_rate_limited"
    assert error_in({"candidates": []}) is None


def test_endpoints_for_plain_and_stream():
    adapter = GoogleAdapter(HttpClient())
    target = Target("google", "gemini-1.5-pro", "https://generativelanguage.googleapis.com/",
                    "AIzaTest")
    url, headers = adapter.endpoint(target, stream=False)
    assert url == ("https://generativelanguage.googleapis.com/v1beta/models/"
                   "gemini-1.5-pro:generateContent")
    assert headers["x-goog-api-key"] == "AIzaTest"
    url, _ = adapter.endpoint(target, stream=True)
    assert url.endswith("/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse")


def test_stream_function_calls_become_indexed_tool_call_deltas():
    raw = (b'data: {"candidates":[{"content":{"role":"model","parts":[{"functionCall":'
           b'{"name":"weather","args":{"city":"Oslo"}}},{"functionCall":{"name":"time",'
           b'"args":{}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":20,'
           b'"candidatesTokenCount":8,"toolUsePromptTokenCount":5}}\r\n\r\n')
    state = GoogleStreamState()
    chunks = run_stream(state, raw)
    calls = [c["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["delta"]]
    assert [(c["index"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "weather", '{"city":"Oslo"}'), (1, "time", "{}")]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert calls[0]["id"] != calls[1]["id"]
    assert chunks[-1] == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    assert state.usage == Usage(input_tokens=25, output_tokens=8, cached_tokens=0)


def test_stream_blocked_prompt_is_content_filtered():
    raw = b'data: {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}\r\n\r\n'
    with pytest.raises(UpstreamError) as info:
        run_stream(GoogleStreamState(), raw)
    assert info.value.code == "content_filtered"
