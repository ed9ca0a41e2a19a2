"""The official anthropic SDK accepts the simulator's messages, plain and streamed."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.simulator.expect import input_tokens, output_tokens, reply_text

MODEL = "claude-3-5-sonnet-20241022"
SYSTEM = "You are terse."
PROMPT = "Name three rivers of Europe, please."
MESSAGES = [{"role": "user", "content": PROMPT}]
HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def test_plain_message_has_the_deterministic_text_and_usage(sim):
    message = sim.anthropic().messages.create(model=MODEL, max_tokens=1024, system=SYSTEM, messages=MESSAGES)
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == reply_text(MODEL, PROMPT)
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == input_tokens(SYSTEM, PROMPT)
    assert message.usage.output_tokens == output_tokens(MODEL, PROMPT)
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


def test_stream_events_come_in_anthropic_order_and_match_the_plain_message(sim):
    client = sim.anthropic()
    plain = client.messages.create(model=MODEL, max_tokens=1024, system=SYSTEM, messages=MESSAGES)
    events = list(client.messages.create(model=MODEL, max_tokens=1024, system=SYSTEM, messages=MESSAGES, stream=True))
    types = [event.type for event in events]
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert len(deltas) == plain.usage.output_tokens  # one token per chunk
    assert "".join(d.delta.text for d in deltas) == plain.content[0].text
    assert events[0].message.usage.input_tokens == plain.usage.input_tokens
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].usage.output_tokens == plain.usage.output_tokens


def test_stream_sends_ping_and_named_events_on_the_wire(sim):
    body = {"model": MODEL, "max_tokens": 100, "messages": MESSAGES, "stream": True}
    response = httpx.post(sim.url + "/v1/messages", json=body, headers=HEADERS)
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-1] == "message_stop"


def test_stream_helper_accumulates_the_same_usage_as_plain(sim):
    client = sim.anthropic()
    plain = client.messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES)
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == plain.content[0].text
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_max_tokens_truncates_with_stop_reason_max_tokens(sim):
    message = sim.anthropic().messages.create(model=MODEL, max_tokens=3, messages=MESSAGES)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == reply_text(MODEL, PROMPT, 3)
    assert message.usage.output_tokens == 3


def test_stop_sequence_is_reported(sim):
    full = reply_text(MODEL, PROMPT)
    word = full.split()[4]
    message = sim.anthropic().messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stop_sequences=[word])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == word
    assert message.content[0].text == full[: full.index(word)]


def test_system_as_blocks_and_multi_turn_history_are_counted(sim):
    messages = [
        {"role": "user", "content": "First question?"},
        {"role": "assistant", "content": [{"type": "text", "text": "First answer."}]},
        {"role": "user", "content": [{"type": "text", "text": "Second question?"}]},
    ]
    message = sim.anthropic().messages.create(
        model=MODEL, max_tokens=100, system=[{"type": "text", "text": SYSTEM}], messages=messages
    )
    assert message.usage.input_tokens == input_tokens(SYSTEM, "First question?", "First answer.", "Second question?")
    assert message.content[0].text == reply_text(MODEL, "Second question?")


def test_missing_max_tokens_is_an_invalid_request_like_the_real_api(sim):
    response = httpx.post(sim.url + "/v1/messages", json={"model": MODEL, "messages": MESSAGES}, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]
    assert response.headers["request-id"]


def test_missing_version_header_or_bad_key_get_anthropic_errors(sim):
    body = {"model": MODEL, "max_tokens": 10, "messages": MESSAGES}
    no_version = httpx.post(sim.url + "/v1/messages", json=body, headers={"x-api-key": "k"})
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    no_key = httpx.post(sim.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError) as raised:
        sim.anthropic(key="invalid").messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert raised.value.type == "authentication_error"


def test_bad_json_gets_anthropic_400(sim):
    response = httpx.post(sim.url + "/v1/messages", content=b"{oops", headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_tokens_are_counted_without_generating(sim):
    counted = sim.anthropic().messages.count_tokens(model=MODEL, system=SYSTEM, messages=MESSAGES)
    assert counted.input_tokens == input_tokens(SYSTEM, PROMPT)


def test_models_are_listed_for_anthropic_headers(sim):
    assert MODEL in {model.id for model in sim.anthropic().models.list()}
