"""Tool calls, structured output, n, logprobs, thinking and image inputs from the
simulator, read by the three official SDKs: deterministic, in each provider's shape,
with the rules each provider enforces."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from simulator.tools import fragments

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 3},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city", "unit"],
}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": SCHEMA}},
                {"type": "function", "function": {"name": "clock", "parameters": {
                    "type": "object", "properties": {"tz": {"type": "string"}}}}}]
ANTHROPIC_TOOLS = [{"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in OPENAI_TOOLS]
BOTH = "Call weather and clock for Oslo."
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


def check_weather(args: dict) -> None:
    assert set(args) == {"city", "unit", "days", "tags"}
    assert args["unit"] in ("c", "f") and 1 <= args["days"] <= 3 and len(args["tags"]) == 2


# ------------------------------------------------------------------------------ OpenAI


def test_openai_parallel_tool_calls_plain_and_streamed_by_the_sdk(sim):
    client = sim.openai()
    messages = [{"role": "user", "content": BOTH}]
    plain = client.chat.completions.create(model="gpt-4o", messages=messages, tools=OPENAI_TOOLS)
    choice = plain.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [c.function.name for c in choice.message.tool_calls] == ["weather", "clock"]
    assert all(c.id.startswith("call_") and len(c.id) == 29 for c in choice.message.tool_calls)
    check_weather(json.loads(choice.message.tool_calls[0].function.arguments))
    assert plain.usage.completion_tokens > 0

    with client.chat.completions.stream(model="gpt-4o", messages=messages, tools=OPENAI_TOOLS) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name) for c in streamed] == [(c.id, c.function.name)
                                                           for c in choice.message.tool_calls]
    assert [json.loads(c.function.arguments) for c in streamed] == [
        json.loads(c.function.arguments) for c in choice.message.tool_calls]
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_rules_on_tool_turns_and_json_mode(sim):
    client = sim.openai()
    with pytest.raises(openai.BadRequestError, match="must be a response to a preceeding message"):
        client.chat.completions.create(model="gpt-4o", messages=[
            {"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "1"}])
    with pytest.raises(openai.BadRequestError, match="did not have response messages: call_b"):
        client.chat.completions.create(model="gpt-4o", messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
                {"id": "call_b", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "1"},
            {"role": "user", "content": "and?"}])
    with pytest.raises(openai.BadRequestError, match="must contain the word 'json'"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                       response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError, match="Invalid image URL"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]}])


def test_openai_named_choice_finishes_stop_and_after_a_result_it_answers(sim):
    client = sim.openai()
    named = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                                           tools=OPENAI_TOOLS,
                                           tool_choice={"type": "function", "function": {"name": "clock"}})
    assert named.choices[0].finish_reason == "stop"
    call = named.choices[0].message.tool_calls[0]
    answer = client.chat.completions.create(model="gpt-4o", tools=OPENAI_TOOLS, messages=[
        {"role": "user", "content": "x"}, named.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "12:00"}])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content


def test_openai_json_schema_n_and_logprobs(sim):
    client = sim.openai()
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "weather"}],
                                           response_format={"type": "json_schema", "json_schema": {
                                               "name": "w", "schema": SCHEMA}})
    check_weather(json.loads(reply.choices[0].message.content))
    several = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], n=2,
                                             logprobs=True, top_logprobs=3)
    assert len(several.choices) == 2 and several.choices[0].message.content != several.choices[1].message.content
    tokens = several.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == several.choices[0].message.content
    assert all(len(t.top_logprobs) == 3 for t in tokens)
    assert several.usage.completion_tokens == sum(len(c.logprobs.content) for c in several.choices)


def test_openai_max_tokens_cuts_inside_the_arguments(sim):
    reply = sim.openai().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                                                 tools=OPENAI_TOOLS, max_tokens=6)
    assert reply.choices[0].finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.choices[0].message.tool_calls[0].function.arguments)


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_tool_use_plain_and_streamed_by_the_sdk(sim):
    client = sim.anthropic()
    request = {"model": "claude-3-5-sonnet-20241022", "max_tokens": 500,
               "messages": [{"role": "user", "content": BOTH}], "tools": ANTHROPIC_TOOLS}
    plain = client.messages.create(**request)
    assert plain.stop_reason == "tool_use"
    assert [(b.type, b.name) for b in plain.content] == [("tool_use", "weather"), ("tool_use", "clock")]
    assert all(b.id.startswith("toolu_") for b in plain.content)
    check_weather(plain.content[0].input)
    with client.messages.stream(**request) as stream:
        final = stream.get_final_message()
    assert [(b.id, b.input) for b in final.content] == [(b.id, b.input) for b in plain.content]
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_anthropic_rules_on_tool_turns_images_and_thinking(sim):
    client = sim.anthropic()
    base = {"model": "claude-sonnet-4-20250514", "max_tokens": 3000}
    call = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "clock", "input": {}}]}
    with pytest.raises(anthropic.BadRequestError, match="without `tool_result` blocks immediately after"):
        client.messages.create(**base, messages=[{"role": "user", "content": "x"}, call,
                                                 {"role": "user", "content": "next"}])
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        client.messages.create(**base, messages=[{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_9", "content": "1"}]}])
    with pytest.raises(anthropic.BadRequestError, match="media_type"):
        client.messages.create(**base, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG}}]}])
    with pytest.raises(anthropic.BadRequestError, match="text content blocks must be non-empty"):
        client.messages.create(**base, messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}])
    thinking = {"type": "enabled", "budget_tokens": 1024}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "1"}]}
    with pytest.raises(anthropic.BadRequestError, match="Expected `thinking` or `redacted_thinking`"):
        client.messages.create(**base, thinking=thinking, messages=[{"role": "user", "content": "x"}, call, result])
    with pytest.raises(anthropic.BadRequestError, match="forces tool use"):
        client.messages.create(**base, thinking=thinking, messages=[{"role": "user", "content": "x"}],
                               tools=ANTHROPIC_TOOLS, tool_choice={"type": "any"})
    message = client.messages.create(**base, thinking=thinking, messages=[{"role": "user", "content": "x"}],
                                     tools=ANTHROPIC_TOOLS)
    assert [b.type for b in message.content] == ["thinking", "tool_use"]
    assert message.content[0].signature
    ok = client.messages.create(**base, thinking=thinking, messages=[
        {"role": "user", "content": "x"}, {"role": "assistant", "content": [b.model_dump() for b in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": message.content[1].id,
                                      "content": "1"}]}])
    assert ok.stop_reason == "end_turn"
    with client.messages.stream(**base, thinking=thinking, messages=[{"role": "user", "content": "x"}]) as stream:
        streamed = stream.get_final_message()
    assert [b.type for b in streamed.content] == ["thinking", "text"]


def test_anthropic_content_filter_fault_is_a_refusal(sim):
    sim.fault(provider="anthropic", mode="content_filter")
    message = sim.anthropic().messages.create(model="claude-3-5-sonnet-20241022", max_tokens=50,
                                              messages=[{"role": "user", "content": "x"}])
    assert message.stop_reason == "refusal"


# ------------------------------------------------------------------------------ Gemini


def test_gemini_function_calls_plain_and_streamed_by_the_sdk(sim):
    client = sim.genai()
    tool = genai_types.Tool(function_declarations=[
        genai_types.FunctionDeclaration(name="weather", parameters_json_schema=SCHEMA),
        genai_types.FunctionDeclaration(name="clock", parameters=genai_types.Schema(
            type="OBJECT", properties={"tz": genai_types.Schema(type="STRING")}))])
    config = genai_types.GenerateContentConfig(tools=[tool])
    plain = client.models.generate_content(model="gemini-2.0-flash", contents=BOTH, config=config)
    assert [(c.name, c.id) for c in plain.function_calls] == [("weather", None), ("clock", None)]
    check_weather(plain.function_calls[0].args)
    assert plain.candidates[0].finish_reason == "STOP"
    streamed = [call for chunk in client.models.generate_content_stream(model="gemini-2.0-flash", contents=BOTH,
                                                                         config=config)
                for call in chunk.function_calls or ()]
    assert [(c.name, c.args) for c in streamed] == [(c.name, c.args) for c in plain.function_calls]


def test_gemini_rules_json_mode_candidates_and_logprobs(sim):
    client = sim.genai()
    with pytest.raises(genai.errors.ClientError, match="number of function response parts"):
        client.models.generate_content(model="gemini-2.0-flash", contents=[
            genai_types.Content(role="user", parts=[genai_types.Part(text="x")]),
            genai_types.Content(role="user", parts=[genai_types.Part(
                function_response=genai_types.FunctionResponse(name="clock", response={"output": 1}))])])
    reply = client.models.generate_content(model="gemini-2.0-flash", contents="weather", config=genai_types.
                                           GenerateContentConfig(response_mime_type="application/json",
                                                                 response_json_schema=SCHEMA))
    check_weather(json.loads(reply.text))
    several = client.models.generate_content(model="gemini-2.0-flash", contents="x", config=genai_types.
                                             GenerateContentConfig(candidate_count=2, response_logprobs=True,
                                                                   logprobs=2))
    assert len(several.candidates) == 2
    result = several.candidates[0].logprobs_result
    assert len(result.chosen_candidates) == len(result.top_candidates) > 0
    assert len(result.top_candidates[0].candidates) == 2
    # the SDK encodes image bytes itself: send undecodable base64 by hand
    bad = httpx.post(sim.url + "/v1beta/models/gemini-2.0-flash:generateContent", headers={"x-goog-api-key": "k"},
                     json={"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png",
                                                                                     "data": "%%"}}]}]})
    assert bad.status_code == 400 and "Base64 decoding failed" in bad.json()["error"]["message"]


def test_gemini_content_filter_fault_is_safety_without_content(sim):
    sim.fault(provider="google", mode="content_filter")
    reply = sim.genai().models.generate_content(model="gemini-2.0-flash", contents="x")
    assert reply.candidates[0].finish_reason == "SAFETY" and reply.candidates[0].content is None


# -------------------------------------------------------------------------------- wire


def test_argument_fragments_end_inside_escapes_and_keys():
    text = json.dumps({"city": "Zu\u0308rich \"old\"", "emoji": "\U0001f30d"})
    pieces = fragments(text)
    assert "".join(pieces) == text and len(pieces) > 10
    assert any(p.endswith("\\") or p.endswith("\\u") or p[-2:-1] == "\\" for p in pieces)


def test_tool_streams_go_out_in_small_writes(sim):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": BOTH}], "tools": OPENAI_TOOLS,
            "stream": True}
    with httpx.stream("POST", sim.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": "Bearer k"}) as response:
        raw = b"".join(response.iter_raw())
    events = [json.loads(line[6:]) for line in raw.decode().split("\n\n") if line.startswith("data: {")]
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert deltas[0]["tool_calls"][0]["function"] == {"name": "weather", "arguments": ""}
    assert sum(1 for d in deltas if d.get("tool_calls")) > 10
