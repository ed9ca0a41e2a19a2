"""Golden wire translation, Gemini generateContent: request out, response in, streams.

Edge cases: empty assistant content with tool calls, several parallel calls, tool
results carrying JSON (object, array) or text, images by data: and https: URL, a
stream cut inside a tool argument, JSON Schema translated to Gemini's Schema (and the
constructs it cannot express refused by name), n / logprobs / reasoning mapping."""

from __future__ import annotations

import orjson
import pytest
from adapter_helpers import run_stream
from golden import CONVERSATION, PNG, TOOLS, arguments_by_index, sse

from adapters.base import Usage
from adapters.errors import UpstreamError
from adapters.google import GoogleStreamState, aspect_ratio, build_request, image_request, parse_response
from adapters.schema import SchemaError, to_gemini_schema

GEMINI_WEATHER = {
    "type": "OBJECT",
    "properties": {
        "city": {"type": "STRING", "description": "City name"},
        "unit": {"type": "STRING", "enum": ["c", "f"]},
        "days": {"type": "INTEGER", "nullable": True, "minimum": 1, "maximum": 7},
    },
    "propertyOrdering": ["city", "unit", "days"],
    "required": ["city", "unit"],
}


def test_request_out_tools_images_parallel_calls_and_results():
    body = {"model": "google/gemini-1.5-flash", "messages": CONVERSATION, "tools": TOOLS, "tool_choice": "auto",
            "user": "user-7", "metadata": {"ticket": "T-1"}}
    assert build_request(body, "gemini-1.5-flash", stream=True) == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [
                {"text": "Weather and time where these photos were taken?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/paris.jpg"}},
            ]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris", "unit": "c"}}},
                {"functionCall": {"name": "time", "args": {"tz": "Europe/Paris"}}},
            ]},
            {"role": "user", "parts": [
                # named after the call each answers: Gemini matches results by name
                {"functionResponse": {"name": "weather",
                                      "response": {"temp": 18, "sky": "clear", "wind": [3, "NW"]}}},
                {"functionResponse": {"name": "time", "response": {"output": "14:05"}}},
                {"text": "And tomorrow?"},
            ]},
        ],
        "tools": [{"functionDeclarations": [
            {"name": "weather", "description": "Current weather", "parameters": GEMINI_WEATHER},
            {"name": "time", "parameters": {"type": "OBJECT", "properties": {"tz": {"type": "STRING"}},
                                            "propertyOrdering": ["tz"], "required": ["tz"]}},
        ]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    }


def test_tool_results_that_are_json_arrays_or_scalars_stay_json():
    body = {"messages": [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "[1, 2]"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "42"}]},
    ]}
    parts = build_request(body, "m", False)["contents"][1]["parts"]
    assert parts == [{"functionResponse": {"name": "f", "response": {"output": [1, 2]}}},
                     {"functionResponse": {"name": "g", "response": {"output": 42}}}]


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"mode": "AUTO"}),
    ("required", {"mode": "ANY"}),
    ("none", {"mode": "NONE"}),
    ({"type": "function", "function": {"name": "time"}}, {"mode": "ANY", "allowedFunctionNames": ["time"]}),
])
def test_tool_choice(choice, expected):
    body = {"messages": [{"role": "user", "content": "x"}], "tools": TOOLS, "tool_choice": choice}
    assert build_request(body, "m", False)["toolConfig"] == {"functionCallingConfig": expected}


def test_response_in_parallel_function_calls_without_text():
    native = {
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Rome", "unit": "c"}}},
            {"functionCall": {"name": "time", "args": {"tz": "Europe/Rome"}}},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 12, "totalTokenCount": 42},
    }
    completion = parse_response(native)
    assert completion.finish_reason == "tool_calls"
    message = completion.message
    assert message["content"] is None
    calls = message["tool_calls"]
    assert [(c["type"], c["function"]["name"], orjson.loads(c["function"]["arguments"])) for c in calls] == [
        ("function", "weather", {"city": "Rome", "unit": "c"}), ("function", "time", {"tz": "Europe/Rome"})]
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert completion.usage == Usage(30, 12, 0)


@pytest.mark.parametrize(("reason", "finish"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("OTHER", "stop"),
])
def test_finish_reasons(reason, finish):
    native = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert parse_response(native).finish_reason == finish


def test_a_call_cut_by_the_token_limit_stays_length():
    native = {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]},
                              "finishReason": "MAX_TOKENS"}]}
    assert parse_response(native).finish_reason == "length"


STREAM = [
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking."}]}, "index": 0}],
     "usageMetadata": {"promptTokenCount": 30}},
    {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Z\u00fcrich \"old town\"", "unit": "c"}}}]},
        "index": 0}]},
    {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "time", "args": {"tz": "Europe/Zurich"}}}]}, "finishReason": "STOP", "index": 0}],
     "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 20, "totalTokenCount": 50}},
]


def _gemini_sse(events: list[dict]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


@pytest.mark.parametrize("piece", [None, 1, 2, 5, 13])
def test_stream_parallel_function_calls_any_byte_split(piece):
    state = GoogleStreamState()
    chunks = run_stream(state, _gemini_sse(STREAM), piece)
    calls = arguments_by_index(chunks)
    assert [calls[i]["name"] for i in (0, 1)] == ["weather", "time"]
    assert orjson.loads(calls[0]["arguments"]) == {"city": "Z\u00fcrich \"old town\"", "unit": "c"}
    assert orjson.loads(calls[1]["arguments"]) == {"tz": "Europe/Zurich"}
    assert calls[0]["id"] and calls[0]["id"] != calls[1]["id"]
    assert chunks[1] == {"index": 0, "delta": {"content": "Checking."}, "finish_reason": None}
    assert [c["finish_reason"] for c in chunks if c["finish_reason"]] == ["tool_calls"]
    assert state.usage == Usage(30, 20, 0)
    state.end()


def test_stream_cut_inside_a_tool_argument():
    raw = _gemini_sse(STREAM)
    cut = raw[: raw.index(b"old town")]  # inside the second event, in the middle of an argument
    state = GoogleStreamState()
    chunks = run_stream(state, cut, 3)
    # Gemini sends a call whole, in one event: a cut one never surfaces as a partial call
    assert not arguments_by_index(chunks)
    assert [c["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {"content": "Checking."}]
    with pytest.raises(UpstreamError) as info:
        state.end()
    assert info.value.code == "upstream_error"


# ------------------------------------------------------------------ structured output


def test_json_schema_becomes_response_schema():
    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"name": {"type": "string"},
                                                            "at": {"type": "string", "format": "date-time"}},
                           "required": ["name"], "additionalProperties": False}},
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1},
            "kind": {"const": "list"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "score": {"type": "number", "format": "double"},
        },
        "required": ["items", "kind"],
        "additionalProperties": False,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
    }
    body = {"messages": [{"role": "user", "content": "list"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "listing", "strict": True,
                                                                        "schema": schema}}}
    assert build_request(body, "m", False)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "items": {"type": "ARRAY", "minItems": 1, "items": {
                    "type": "OBJECT",
                    "properties": {"name": {"type": "STRING"}, "at": {"type": "STRING", "format": "date-time"}},
                    "propertyOrdering": ["name", "at"], "required": ["name"]}},
                "kind": {"type": "STRING", "enum": ["list"]},
                "note": {"type": "STRING", "nullable": True},
                "score": {"type": "NUMBER", "format": "double"},
            },
            "propertyOrdering": ["items", "kind", "note", "score"],
            "required": ["items", "kind"],
        },
    }
    assert build_request({**body, "response_format": {"type": "json_object"}}, "m", False)["generationConfig"] == {
        "responseMimeType": "application/json"}


@pytest.mark.parametrize(("schema", "construct"), [
    ({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}}, "oneOf"),
    ({"type": "object", "properties": {"a": {"type": "object", "additionalProperties": {"type": "string"}}}},
     "additionalProperties"),
    ({"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}, "format 'email'"),
    ({"type": "object", "properties": {"a": {"type": "integer", "enum": [1, 2]}}}, "enum"),
    ({"type": "object", "properties": {"a": {"type": ["string", "integer"]}}}, "several non-null types"),
    ({"type": "object", "properties": {"a": {"type": "array", "prefixItems": [{"type": "string"}]}}}, "prefixItems"),
    ({"type": "object", "properties": {"a": {"type": "number", "exclusiveMinimum": 0}}}, "exclusiveMinimum"),
    ({"type": "object", "properties": {"a": {"type": "object"}}}, "free-form object"),
    ({"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
      "type": "object", "properties": {"head": {"$ref": "#/$defs/N"}}}, "recursive $ref"),
    ({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}, "$ref"),
    ({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}},
     "uniqueItems"),
])
def test_schema_constructs_gemini_cannot_express_are_refused_by_name(schema, construct):
    with pytest.raises(SchemaError) as caught:
        to_gemini_schema(schema)
    assert construct in str(caught.value)
    body = {"messages": [{"role": "user", "content": "x"}], "tools": [
        {"type": "function", "function": {"name": "f", "parameters": schema}}]}
    with pytest.raises(UpstreamError) as info:
        build_request(body, "m", False)
    assert info.value.code == "invalid_request"
    assert info.value.message.startswith("tools[0].function.parameters: ")
    assert construct in info.value.message and "not supported by google" in info.value.message


def test_schema_error_names_where_it_is():
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"not": {}}}}}}
    with pytest.raises(SchemaError) as caught:
        to_gemini_schema(schema)
    assert caught.value.path == "/properties/a/properties/b"
    assert str(caught.value) == "not at /properties/a/properties/b is not supported by google"


# ------------------------------------------------------------------ parameters


def test_n_logprobs_seed_penalties_and_reasoning_map_to_generation_config():
    body = {"messages": [{"role": "user", "content": "x"}], "n": 3, "logprobs": True, "top_logprobs": 2,
            "seed": 11, "presence_penalty": 0.5, "frequency_penalty": -0.5, "reasoning_effort": "low",
            "max_completion_tokens": 50}
    assert build_request(body, "m", False)["generationConfig"] == {
        "candidateCount": 3, "responseLogprobs": True, "logprobs": 2, "seed": 11, "presencePenalty": 0.5,
        "frequencyPenalty": -0.5, "thinkingConfig": {"thinkingBudget": 1024}, "maxOutputTokens": 50}


@pytest.mark.parametrize(("param", "value"), [
    ("parallel_tool_calls", False), ("logit_bias", {"1": 2}), ("store", True), ("audio", {}),
    ("modalities", ["audio"]), ("service_tier", "priority"), ("functions", []), ("prediction", {}),
])
def test_parameters_gemini_cannot_honour_are_refused_by_name(param, value):
    with pytest.raises(UpstreamError) as info:
        build_request({"messages": [{"role": "user", "content": "x"}], param: value}, "m", False)
    assert f"'{param}' is not supported by google" in info.value.message


def test_several_candidates_and_logprobs_come_back_as_choices():
    native = {"candidates": [
        {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0, "logprobsResult": {
            "topCandidates": [{"candidates": [{"token": "A", "logProbability": -0.1},
                                              {"token": "B", "logProbability": -2.0}]}],
            "chosenCandidates": [{"token": "A", "logProbability": -0.1}]}},
        {"content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1},
    ], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}
    completion = parse_response(native)
    assert completion.logprobs == {"content": [{"token": "A", "logprob": -0.1, "bytes": [65], "top_logprobs": [
        {"token": "A", "logprob": -0.1, "bytes": [65]}, {"token": "B", "logprob": -2.0, "bytes": [66]}]}],
        "refusal": None}
    assert completion.more_choices == [{"index": 1, "message": {"role": "assistant", "content": "B"},
                                        "finish_reason": "length", "logprobs": None}]


def test_several_candidates_stream_side_by_side():
    events = [
        {"candidates": [{"content": {"parts": [{"text": "A"}]}, "index": 0},
                        {"content": {"parts": [{"text": "B"}]}, "index": 1}]},
        {"candidates": [{"content": {"parts": [{"text": "."}]}, "finishReason": "STOP", "index": 0},
                        {"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP", "index": 1}],
         "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}},
    ]
    chunks = run_stream(GoogleStreamState(), _gemini_sse(events))
    text = {0: "", 1: ""}
    for chunk in chunks:
        text[chunk["index"]] += chunk["delta"].get("content") or ""
    assert text == {0: "A.", 1: "B!"}
    assert [(c["index"], c["finish_reason"]) for c in chunks if c["finish_reason"]] == [(0, "stop"), (1, "stop")]


# ------------------------------------------------------------------ images


def test_image_request_and_sizes():
    assert image_request({"prompt": "a cat", "size": "1536x1024"}) == {
        "contents": [{"role": "user", "parts": [{"text": "a cat"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "3:2"}}}
    assert [aspect_ratio(s) for s in ("1024x1024", "256x256", "1344x768", "1792x1024", "1024x1792", "864x1184")] == [
        "1:1", "1:1", "16:9", "16:9", "9:16", "3:4"]
    with pytest.raises(UpstreamError, match=r"aspect ratio 2:1\) is not supported by google"):
        aspect_ratio("2048x1024")
    with pytest.raises(UpstreamError, match="'quality' is not supported by google"):
        image_request({"prompt": "a cat", "quality": "hd"})


def test_sse_helper_is_what_gemini_sends():
    assert sse((None, {"a": 1})) == b'data: {"a":1}\n\n'
