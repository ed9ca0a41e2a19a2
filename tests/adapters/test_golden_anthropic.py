"""Golden wire translation, Anthropic Messages API: request out, response in, streams.

Edge cases: empty assistant content with tool calls, several parallel tool calls,
tool results carrying JSON, images by data: and https: URL, a stream cut inside a tool
argument, structured output through the forced answer tool, thinking blocks."""

from __future__ import annotations

import orjson
import pytest
from adapter_helpers import run_stream
from golden import CONVERSATION, PNG, TIME, TOOLS, WEATHER, arguments_by_index, sse

from adapters.anthropic import RESPONSE_TOOL, AnthropicStreamState, build_request, parse_response
from adapters.base import Usage
from adapters.errors import UpstreamError

MODEL = "claude-3-5-sonnet-20241022"


def test_request_out_tools_images_parallel_calls_and_results():
    body = {"model": "anthropic/claude-3-5-sonnet", "messages": CONVERSATION, "tools": TOOLS,
            "tool_choice": "auto", "user": "user-7", "metadata": {"ticket": "T-1"}}
    assert build_request(body, MODEL, stream=False) == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather and time where these photos were taken?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.jpg"}},
            ]},
            # empty content dropped: Anthropic refuses empty text blocks
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_w", "name": "weather", "input": {"city": "Paris", "unit": "c"}},
                {"type": "tool_use", "id": "call_t", "name": "time", "input": {"tz": "Europe/Paris"}},
            ]},
            # both results in the one user turn that must follow, results first, then the text
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_w",
                 "content": '{"temp": 18, "sky": "clear", "wind": [3, "NW"]}'},
                {"type": "tool_result", "tool_use_id": "call_t", "content": "14:05"},
                {"type": "text", "text": "And tomorrow?"},
            ]},
        ],
        "tools": [
            {"name": "weather", "description": "Current weather", "input_schema": WEATHER},
            {"name": "time", "input_schema": TIME},
        ],
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "user-7"},  # OpenAI metadata has no counterpart: not sent
    }


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "time"}}, None, {"type": "tool", "name": "time"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
])
def test_tool_choice_and_parallel_tool_calls(choice, parallel, expected):
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, "tool_choice": choice,
            "parallel_tool_calls": parallel}
    assert build_request(body, MODEL, False)["tool_choice"] == expected


def test_response_in_empty_content_with_parallel_tool_calls():
    native = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
        "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Rome", "unit": "c"}},
            {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {"tz": "Europe/Rome"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 50, "output_tokens": 40},
    }
    completion = parse_response(native)
    assert completion.finish_reason == "tool_calls"
    assert completion.message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "toolu_a", "type": "function", "function": {"name": "weather",
                                                               "arguments": '{"city":"Rome","unit":"c"}'}},
            {"id": "toolu_b", "type": "function", "function": {"name": "time", "arguments": '{"tz":"Europe/Rome"}'}},
        ],
    }
    assert completion.usage == Usage(50, 40, 0)


TOOL_STREAM = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_2", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "usage": {"input_tokens": 60, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
        "type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "input_json_delta", "partial_json": '{"city": "Z\\u00'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "input_json_delta", "partial_json": 'fcrich", "un'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "input_json_delta", "partial_json": 'it": "c"}'}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_b", "name": "time", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": '{"tz": "Europe/Z\\u00fcrich"}'}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 44}}),
    ("message_stop", {"type": "message_stop"}),
]


@pytest.mark.parametrize("piece", [None, 1, 3, 7, 64])
def test_stream_parallel_tool_calls_any_byte_split(piece):
    state = AnthropicStreamState()
    chunks = run_stream(state, sse(*TOOL_STREAM), piece)
    calls = arguments_by_index(chunks)
    assert calls == {
        0: {"id": "toolu_a", "name": "weather", "arguments": '{"city": "Z\\u00fcrich", "unit": "c"}'},
        1: {"id": "toolu_b", "name": "time", "arguments": '{"tz": "Europe/Z\\u00fcrich"}'},
    }
    assert orjson.loads(calls[0]["arguments"]) == {"city": "Zürich", "unit": "c"}
    assert [c["finish_reason"] for c in chunks if c["finish_reason"]] == ["tool_calls"]
    assert state.usage == Usage(60, 44, 0)
    state.end()


def test_stream_cut_inside_a_tool_argument():
    cut = sse(*TOOL_STREAM[:4])  # ... '{"city": "Z\u00' and then the connection drops
    state = AnthropicStreamState()
    chunks = run_stream(state, cut + b'event: content_block_delta\ndata: {"type": "content_bl', 5)
    assert arguments_by_index(chunks) == {0: {"id": "toolu_a", "name": "weather", "arguments": '{"city": "Z\\u00'}}
    assert state.finish_reason is None
    assert state.usage == Usage(60, 1, 0)  # the input side is known; the gateway estimates the rest
    with pytest.raises(UpstreamError) as info:
        state.end()
    assert info.value.code == "upstream_error"


# ------------------------------------------------------------------ structured output


def test_json_schema_is_a_forced_answer_tool():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = {"messages": [{"role": "user", "content": "count"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "count", "schema": schema,
                                                                        "description": "How many."}}}
    payload = build_request(body, MODEL, False)
    assert payload["tools"] == [{
        "name": RESPONSE_TOOL,
        "description": "Give your final answer by calling this tool; its input is the answer. "
                       "The answer is a count. How many.",
        "input_schema": schema,
    }]
    assert payload["tool_choice"] == {"type": "tool", "name": RESPONSE_TOOL}


def test_json_object_and_json_schema_next_to_client_tools():
    body = {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}
    payload = build_request(body, MODEL, False)
    assert payload["tools"][0]["input_schema"] == {"type": "object"}
    assert payload["tool_choice"] == {"type": "tool", "name": RESPONSE_TOOL}
    # with the client's tools under auto: call one of them, or answer through the answer tool
    with_tools = build_request({**body, "tools": TOOLS}, MODEL, False)
    assert [t["name"] for t in with_tools["tools"]] == ["weather", "time", RESPONSE_TOOL]
    assert with_tools["tool_choice"] == {"type": "any"}
    # tool_choice none: only the answer tool
    none = build_request({**body, "tools": TOOLS, "tool_choice": "none"}, MODEL, False)
    assert [t["name"] for t in none["tools"]] == [RESPONSE_TOOL]


def test_structured_answer_comes_back_as_content_with_finish_stop():
    native = {"content": [{"type": "tool_use", "id": "toolu_j", "name": RESPONSE_TOOL,
                           "input": {"n": 3, "label": "caf\u00e9"}}],
              "stop_reason": "tool_use", "usage": {"input_tokens": 9, "output_tokens": 12}}
    completion = parse_response(native)
    assert completion.finish_reason == "stop"
    assert completion.message == {"role": "assistant", "content": '{"n":3,"label":"café"}'}


def test_structured_answer_streams_as_content_deltas():
    events = [
        TOOL_STREAM[0],
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_j", "name": RESPONSE_TOOL, "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"n": '}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": "3}"}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    chunks = run_stream(AnthropicStreamState(), sse(*events), 4)
    assert "".join(c["delta"].get("content") or "" for c in chunks) == '{"n": 3}'
    assert not arguments_by_index(chunks)
    assert chunks[-1]["finish_reason"] == "stop"


def test_reserved_tool_name_and_non_object_schema_are_refused():
    with pytest.raises(UpstreamError, match="reserved"):
        build_request({"messages": [{"role": "user", "content": "x"}], "tools": [
            {"type": "function", "function": {"name": RESPONSE_TOOL}}]}, MODEL, False)
    with pytest.raises(UpstreamError, match="must describe an object"):
        build_request({"messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}}}, MODEL, False)


# ------------------------------------------------------------------ parameters, thinking


@pytest.mark.parametrize(("param", "value"), [
    ("n", 2), ("seed", 7), ("logprobs", True), ("top_logprobs", 2), ("presence_penalty", 0.5),
    ("frequency_penalty", -1), ("logit_bias", {"50256": -100}), ("store", True), ("service_tier", "flex"),
    ("modalities", ["text", "audio"]), ("audio", {"voice": "alloy"}), ("prediction", {"type": "content"}),
    ("web_search_options", {}), ("functions", [{"name": "f"}]), ("function_call", "auto"),
])
def test_parameters_anthropic_cannot_honour_are_refused_by_name(param, value):
    with pytest.raises(UpstreamError) as info:
        build_request({"messages": [{"role": "user", "content": "x"}], param: value}, MODEL, False)
    assert info.value.code == "invalid_request"
    assert f"'{param}' is not supported by anthropic" in info.value.message


@pytest.mark.parametrize(("param", "value"), [
    ("n", 1), ("presence_penalty", 0), ("frequency_penalty", 0), ("logit_bias", {}), ("store", False),
    ("service_tier", "auto"), ("modalities", ["text"]), ("logprobs", False),
])
def test_no_op_values_of_those_parameters_pass(param, value):
    build_request({"messages": [{"role": "user", "content": "x"}], param: value}, MODEL, False)


def test_reasoning_effort_is_a_thinking_budget_within_the_output_limit():
    messages = [{"role": "user", "content": "x"}]
    payload = build_request({"messages": messages, "reasoning_effort": "medium"}, MODEL, False)
    assert payload["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert payload["max_tokens"] == 4096 + 4096
    limited = build_request({"messages": messages, "reasoning_effort": "high", "max_completion_tokens": 6000},
                            MODEL, False)
    assert (limited["thinking"]["budget_tokens"], limited["max_tokens"]) == (3000, 6000)
    assert "thinking" not in build_request({"messages": messages, "reasoning_effort": "minimal"}, MODEL, False)
    with pytest.raises(UpstreamError, match="above 1024"):
        build_request({"messages": messages, "reasoning_effort": "low", "max_tokens": 1000}, MODEL, False)
    with pytest.raises(UpstreamError, match="'temperature' must be 1"):
        build_request({"messages": messages, "reasoning_effort": "low", "temperature": 0.2}, MODEL, False)


def test_thinking_blocks_travel_in_extra_content_and_go_back_first():
    native = {"content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
        {"type": "tool_use", "id": "toolu_1", "name": "time", "input": {"tz": "UTC"}},
    ], "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2}}
    message = parse_response(native).message
    assert message["extra_content"] == {"anthropic": {"thinking_blocks": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig1"}]}}
    body = {"messages": [{"role": "user", "content": "time?"}, message,
                         {"role": "tool", "tool_call_id": "toolu_1", "content": "12:00"}],
            "reasoning_effort": "low"}
    assert build_request(body, MODEL, False)["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig1"},
        {"type": "tool_use", "id": "toolu_1", "name": "time", "input": {"tz": "UTC"}},
    ]


@pytest.mark.parametrize("url", ["data:image/png,rawbytes", "ftp://example.com/a.png", "file:///etc/passwd"])
def test_image_urls_that_cannot_be_handed_on_are_refused(url):
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    with pytest.raises(UpstreamError) as info:
        build_request(body, MODEL, False)
    assert info.value.code == "invalid_request"


def test_tool_parameters_must_be_an_object():
    body = {"messages": [{"role": "user", "content": "x"}], "tools": [
        TOOLS[0], {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]}
    with pytest.raises(UpstreamError) as info:
        build_request(body, MODEL, False)
    assert info.value.message == ("tools[1].function.parameters: a root of type 'array' is not supported by "
                                  "anthropic (a tool's input is an object)")
