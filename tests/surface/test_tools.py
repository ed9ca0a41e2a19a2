"""Tool calling through the gateway with the official openai SDK, against one model of
each provider: the round trip call -> tool result -> answer, plain and streaming; the
streamed arguments parse as JSON and equal the plain ones; parallel calls; tool_choice."""

from __future__ import annotations

import json

import openai
import pytest

from tests.surface.conftest import events_of

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 5},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
TOOLS = [WEATHER, CLOCK]
QUESTION = [{"role": "user", "content": "What is the weather like in Lisbon?"}]
BOTH = [{"role": "user", "content": "Use get_weather and get_time for Lisbon, please."}]
RESULT = {"temperature": 21, "sky": "sunny", "wind_kmh": [10, 14], "note": "caf\u00e9 \"terrace\""}


def streamed(stream) -> tuple[dict[int, dict], str, list[str], int]:
    """(calls by index, content, finish reasons, chunks) of an SDK chat stream."""
    calls: dict[int, dict] = {}
    content = ""
    finishes = []
    chunks = 0
    for chunk in stream:
        if not chunk.choices:
            continue
        chunks += 1
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for call in choice.delta.tool_calls or ():
            entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
            if call.id:
                assert entry["id"] in (None, call.id), "a call's id changed mid-stream"
                entry["id"] = call.id
            if call.function and call.function.name:
                entry["name"] = call.function.name
            entry["arguments"] += (call.function.arguments or "") if call.function else ""
        if choice.finish_reason:
            finishes.append(choice.finish_reason)
    return calls, content, finishes, chunks


def results_for(message) -> list[dict]:
    return [{"role": "tool", "tool_call_id": call.id, "content": json.dumps(RESULT)} for call in message.tool_calls]


@pytest.mark.parametrize("model", MODELS)
def test_round_trip_plain(client, sim, module_gateway, model):
    first = client.chat.completions.with_raw_response.create(model=model, messages=QUESTION, tools=TOOLS)
    reply = first.parse()
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit", "days"} and args["unit"] in ("celsius", "fahrenheit")
    assert 1 <= args["days"] <= 5

    history = [*QUESTION, choice.message.model_dump(exclude_none=True), *results_for(choice.message)]
    answer = client.chat.completions.create(model=model, messages=history, tools=TOOLS)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls

    native = sim.last()["body"]  # the tool result reached the provider in its own shape
    if model.startswith("openai"):
        assert native["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": json.dumps(RESULT)}
        assert native["messages"][-2]["tool_calls"][0]["id"] == call.id
    elif model.startswith("anthropic"):
        assert native["messages"][-2]["content"] == [
            {"type": "tool_use", "id": call.id, "name": "get_weather", "input": args}]
        assert native["messages"][-1] == {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": json.dumps(RESULT)}]}
    else:
        assert native["contents"][-2] == {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": args}}]}
        assert native["contents"][-1] == {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": RESULT}}]}
    events = [e["event"] for e in events_of(module_gateway, first.headers["x-request-id"])]
    assert events == ["Received", "Routed", "AttemptStarted", "AttemptSucceeded", "UsageMetered", "Completed"]


@pytest.mark.parametrize("model", MODELS)
def test_round_trip_streaming_arguments_equal_the_plain_ones(client, sim, module_gateway, model):
    plain = client.chat.completions.create(model=model, messages=BOTH, tools=TOOLS).choices[0].message
    raw = client.chat.completions.with_raw_response.create(model=model, messages=BOTH, tools=TOOLS, stream=True,
                                                           stream_options={"include_usage": True})
    calls, content, finishes, chunks = streamed(raw.parse())
    assert finishes == ["tool_calls"]
    assert content == ""
    assert sorted(calls) == [0, 1]  # two parallel calls, stable indexes
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
    assert calls[0]["id"] != calls[1]["id"]
    for index, call in enumerate(plain.tool_calls):
        assert json.loads(calls[index]["arguments"]) == json.loads(call.function.arguments)

    events = events_of(module_gateway, raw.headers["x-request-id"])
    summary = next(e for e in events if e["event"] == "StreamSummarized")
    assert summary["finish_reason"] == "tool_calls" and summary["chunks"] == chunks

    history = [*BOTH, {"role": "assistant", "content": None, "tool_calls": [
        {"id": calls[i]["id"], "type": "function", "function": {"name": calls[i]["name"],
                                                                "arguments": calls[i]["arguments"]}}
        for i in (0, 1)]}, *[{"role": "tool", "tool_call_id": calls[i]["id"], "content": json.dumps(RESULT)}
                             for i in (0, 1)]]
    final_calls, text, final_finishes, _ = streamed(
        client.chat.completions.create(model=model, messages=history, tools=TOOLS, stream=True))
    assert final_finishes == ["stop"] and text and not final_calls


@pytest.mark.parametrize("model", MODELS)
def test_tool_choice_none_required_and_named(client, sim, model):
    none = client.chat.completions.create(model=model, messages=QUESTION, tools=TOOLS, tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and not none.choices[0].message.tool_calls
    required = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}],
                                              tools=TOOLS, tool_choice="required")
    assert required.choices[0].message.tool_calls
    named = client.chat.completions.create(model=model, messages=QUESTION, tools=TOOLS,
                                           tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert [c.function.name for c in named.choices[0].message.tool_calls] == ["get_time"]
    # OpenAI answers a named tool_choice with finish_reason "stop"; relayed as OpenAI sent it
    assert named.choices[0].finish_reason == ("stop" if model.startswith("openai") else "tool_calls")


@pytest.mark.parametrize("model", MODELS[:2])
def test_parallel_tool_calls_false_gives_one_call(client, sim, model):
    reply = client.chat.completions.create(model=model, messages=BOTH, tools=TOOLS, parallel_tool_calls=False)
    assert len(reply.choices[0].message.tool_calls) == 1


def test_parallel_tool_calls_false_on_gemini_is_a_400_naming_it(client, sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODELS[2], messages=BOTH, tools=TOOLS, parallel_tool_calls=False)
    assert caught.value.code == "invalid_request"
    assert caught.value.param == "parallel_tool_calls"
    assert "not supported by google" in caught.value.message
    assert sim.requests(5) == []  # refused before any provider was called


def test_gemini_schema_construct_is_a_400_naming_it(client, sim):
    pet = {"type": "function", "function": {"name": "adopt", "parameters": {"type": "object", "properties": {
        "pet": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODELS[2], messages=QUESTION, tools=[pet])
    assert "oneOf at /properties/pet is not supported by google" in caught.value.message
    # the same tool is fine where JSON Schema is taken as it is
    client.chat.completions.create(model=MODELS[1], messages=QUESTION, tools=[pet])


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
])
def test_malformed_tools_are_400s_naming_the_field(client, sim, body, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODELS[0], messages=QUESTION, **body)
    assert caught.value.param == param


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_cut_inside_a_tool_argument_ends_with_an_error_and_is_metered_estimated(client, sim,
                                                                                        module_gateway, model):
    provider = model.split("/")[0]
    # OpenAI and Anthropic: a few argument fragments in; Gemini: after its first whole call
    sim.fault(provider=provider, mode="disconnect", after_chunks={"openai": 5, "anthropic": 5, "google": 1}[provider])
    raw = client.chat.completions.with_raw_response.create(model=model, messages=BOTH, tools=TOOLS, stream=True)
    calls = {}
    with pytest.raises(openai.APIError) as caught:
        for chunk in raw.parse():
            for call in (chunk.choices[0].delta.tool_calls or ()) if chunk.choices else ():
                calls.setdefault(call.index, "")
                calls[call.index] += (call.function.arguments or "") if call.function else ""
    assert "upstream_error" in str(caught.value.body) or "stream failed" in str(caught.value)
    assert calls  # what arrived before the cut was relayed
    events = events_of(module_gateway, raw.headers["x-request-id"])
    usage = next(e for e in events if e["event"] == "UsageMetered")
    assert usage["source"] == "estimated" and usage["output_tokens"] > 0
    assert [e["event"] for e in events][-1] == "Failed"
    assert next(e for e in events if e["event"] == "StreamSummarized")["finish_reason"] is None
