"""response_format json_object / json_schema through the gateway, per provider: the
answer is JSON message content; each provider got its own mechanism (OpenAI as sent,
Gemini responseMimeType + responseSchema, Anthropic a forced tool)."""

from __future__ import annotations

import json

import openai
import pytest

from adapters.anthropic import RESPONSE_TOOL

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"]
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "year": {"type": "integer", "minimum": 1900, "maximum": 2030},
        "genres": {"type": "array", "items": {"type": "string", "enum": ["drama", "comedy", "noir"]}},
        "rating": {"type": ["number", "null"]},
    },
    "required": ["title", "year", "genres", "rating"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "film", "strict": True, "schema": SCHEMA}}
ASK = [{"role": "user", "content": "Describe a film as JSON."}]


def assert_film(value: dict) -> None:
    assert set(value) == {"title", "year", "genres", "rating"}
    assert isinstance(value["title"], str) and 1900 <= value["year"] <= 2030
    assert all(g in ("drama", "comedy", "noir") for g in value["genres"])


@pytest.mark.parametrize("model", MODELS)
def test_json_schema_answer_is_json_content(client, sim, model):
    reply = client.chat.completions.create(model=model, messages=ASK, response_format=FORMAT)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert_film(json.loads(choice.message.content))
    native = sim.last()["body"]
    provider = model.split("/")[0]
    if provider == "openai":
        assert native["response_format"] == FORMAT
    elif provider == "anthropic":
        assert native["tools"][0]["name"] == RESPONSE_TOOL and native["tools"][0]["input_schema"] == SCHEMA
        assert native["tool_choice"] == {"type": "tool", "name": RESPONSE_TOOL}
    else:
        config = native["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        assert config["responseSchema"]["properties"]["rating"] == {"type": "NUMBER", "nullable": True}
        assert config["responseSchema"]["propertyOrdering"] == ["title", "year", "genres", "rating"]


@pytest.mark.parametrize("model", MODELS)
def test_json_schema_streams_as_content(client, sim, model):
    chunks = list(client.chat.completions.create(model=model, messages=ASK, response_format=FORMAT, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert_film(json.loads(text))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)


@pytest.mark.parametrize("model", MODELS)
def test_json_object_answer_is_a_json_object(client, sim, model):
    reply = client.chat.completions.create(model=model, messages=ASK, response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_json_schema_with_client_tools_on_anthropic_answers_through_either(client, sim):
    tool = {"type": "function", "function": {"name": "lookup_film", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}
    reply = client.chat.completions.create(model=MODELS[1], messages=ASK, response_format=FORMAT, tools=[tool])
    native = sim.last()["body"]
    assert [t["name"] for t in native["tools"]] == ["lookup_film", RESPONSE_TOOL]
    assert native["tool_choice"] == {"type": "any"}
    assert reply.choices[0].finish_reason == "tool_calls"  # the simulated model picks the first tool


def test_a_schema_gemini_cannot_express_is_a_400_naming_the_construct(client, sim):
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                                        "uniqueItems": True}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODELS[2], messages=ASK, response_format={
            "type": "json_schema", "json_schema": {"name": "t", "schema": schema}})
    assert caught.value.body["message"] == ("response_format.json_schema.schema: uniqueItems at /properties/tags "
                                            "is not supported by google")
    assert sim.requests(5) == []


@pytest.mark.parametrize(("response_format", "param"), [
    ({"type": "xml"}, "response_format.type"),
    ({"type": "json_schema"}, "response_format.json_schema"),
    ({"type": "json_schema", "json_schema": {"name": "has space", "schema": SCHEMA}},
     "response_format.json_schema.name"),
])
def test_malformed_response_format_is_a_400_naming_the_field(client, sim, response_format, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODELS[0], messages=ASK, response_format=response_format)
    assert caught.value.param == param
