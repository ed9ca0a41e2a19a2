"""The official google-genai SDK accepts the simulator's Gemini responses, plain and streamed."""

from __future__ import annotations

import httpx
import orjson
import pytest
from google.genai import errors as genai_errors
from google.genai import types

from tests.simulator.expect import input_tokens, output_tokens, reply_text

MODEL = "gemini-1.5-flash"
SYSTEM = "You are terse."
PROMPT = "Name three rivers of Europe, please."
CONFIG = types.GenerateContentConfig(system_instruction=SYSTEM)


def test_plain_response_has_the_deterministic_text_and_usage(sim):
    response = sim.genai().models.generate_content(model=MODEL, contents=PROMPT, config=CONFIG)
    assert response.text == reply_text(MODEL, PROMPT)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.model_version == MODEL and response.response_id
    usage = response.usage_metadata
    assert usage.prompt_token_count == input_tokens(SYSTEM, PROMPT)
    assert usage.candidates_token_count == output_tokens(MODEL, PROMPT)
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.cached_content_token_count == 0


def test_stream_sends_one_token_per_event_and_full_usage_last(sim):
    client = sim.genai()
    plain = client.models.generate_content(model=MODEL, contents=PROMPT, config=CONFIG)
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=PROMPT, config=CONFIG))
    assert "".join(chunk.text for chunk in chunks) == plain.text
    assert len(chunks) == plain.usage_metadata.candidates_token_count
    assert [c.candidates[0].finish_reason for c in chunks if c.candidates[0].finish_reason] == [types.FinishReason.STOP]
    assert chunks[-1].usage_metadata.model_dump() == plain.usage_metadata.model_dump()


def test_both_api_versions_and_the_key_query_parameter_are_served(sim):
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    for version in ("v1beta", "v1"):
        response = httpx.post(f"{sim.url}/{version}/models/{MODEL}:generateContent?key=k", json=body)
        assert response.status_code == 200
        assert response.json()["candidates"][0]["content"]["parts"][0]["text"] == reply_text(MODEL, PROMPT)


def test_sse_stream_events_are_whole_responses_on_the_wire(sim):
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    url = f"{sim.url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    response = httpx.post(url, json=body, headers={"x-goog-api-key": "k"})
    events = [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert all(event["candidates"][0]["content"]["role"] == "model" for event in events)
    assert "usageMetadata" in events[-1] and "finishReason" in events[-1]["candidates"][0]
    assert "usageMetadata" not in events[0]


def test_stream_without_alt_sse_is_one_json_array(sim):
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    url = f"{sim.url}/v1beta/models/{MODEL}:streamGenerateContent"
    parts = httpx.post(url, json=body, headers={"x-goog-api-key": "k"}).json()
    assert "".join(part["candidates"][0]["content"]["parts"][0]["text"] for part in parts) == reply_text(MODEL, PROMPT)


def test_max_output_tokens_truncates_with_finish_reason_max_tokens(sim):
    config = types.GenerateContentConfig(max_output_tokens=4)
    response = sim.genai().models.generate_content(model=MODEL, contents=PROMPT, config=config)
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.text == reply_text(MODEL, PROMPT, 4)
    assert response.usage_metadata.candidates_token_count == 4
    chunks = list(sim.genai().models.generate_content_stream(model=MODEL, contents=PROMPT, config=config))
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert chunks[-1].usage_metadata.candidates_token_count == 4


def test_stop_sequences_and_multi_turn_contents_are_honoured(sim):
    full = reply_text(MODEL, "Second question?")
    word = full.split()[1]
    contents = [
        types.Content(role="user", parts=[types.Part(text="First question?")]),
        types.Content(role="model", parts=[types.Part(text="First answer.")]),
        types.Content(role="user", parts=[types.Part(text="Second question?")]),
    ]
    config = types.GenerateContentConfig(system_instruction=SYSTEM, stop_sequences=[word], temperature=0.2, top_p=0.9)
    response = sim.genai().models.generate_content(model=MODEL, contents=contents, config=config)
    assert response.text == full[: full.index(word)]
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count == input_tokens(
        SYSTEM, "First question?", "First answer.", "Second question?"
    )


def test_invalid_or_missing_key_gets_gemini_401(sim):
    with pytest.raises(genai_errors.ClientError) as raised:
        sim.genai(key="invalid").models.generate_content(model=MODEL, contents=PROMPT)
    assert raised.value.code == 401 and raised.value.status == "UNAUTHENTICATED"
    response = httpx.post(f"{sim.url}/v1beta/models/{MODEL}:generateContent", json={"contents": []})
    assert response.status_code == 401


def test_bad_json_and_missing_contents_get_gemini_400(sim):
    url = f"{sim.url}/v1beta/models/{MODEL}:generateContent"
    bad = httpx.post(url, content=b"[[[", headers={"x-goog-api-key": "k"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    empty = httpx.post(url, json={}, headers={"x-goog-api-key": "k"})
    assert empty.status_code == 400 and empty.json()["error"]["code"] == 400


def test_tokens_are_counted_and_models_listed(sim):
    client = sim.genai()
    counted = client.models.count_tokens(model=MODEL, contents=PROMPT)
    assert counted.total_tokens == input_tokens(PROMPT)
    assert f"models/{MODEL}" in {model.name for model in client.models.list()}
