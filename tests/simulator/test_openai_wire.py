"""The official openai SDK accepts the simulator's chat completions, plain and streamed."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.simulator.expect import input_tokens, output_tokens, reply_text

MODEL = "gpt-4o-mini"
SYSTEM = "You are terse."
PROMPT = "Name three rivers of Europe, please."
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]


def test_plain_completion_has_the_deterministic_text_and_usage(sim):
    completion = sim.openai().chat.completions.create(model=MODEL, messages=MESSAGES)
    choice = completion.choices[0]
    assert completion.object == "chat.completion" and completion.model == MODEL
    assert choice.message.role == "assistant"
    assert choice.message.content == reply_text(MODEL, PROMPT)
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens == input_tokens(SYSTEM, PROMPT)
    assert usage.completion_tokens == output_tokens(MODEL, PROMPT)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_stream_sends_role_then_one_token_per_chunk_then_finish_then_usage(sim):
    client = sim.openai()
    plain = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert "".join(content) == plain.choices[0].message.content
    assert len(content) == plain.usage.completion_tokens  # one token per chunk
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump() == plain.usage.model_dump()
    assert len({c.id for c in chunks}) == 1


def test_stream_without_include_usage_sends_no_usage_chunk(sim):
    chunks = list(sim.openai().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_ends_with_done_marker_on_the_wire(sim):
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    response = httpx.post(sim.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("limit_field", ["max_tokens", "max_completion_tokens"])
def test_output_limit_truncates_with_finish_reason_length(sim, limit_field):
    client = sim.openai()
    plain = client.chat.completions.create(model=MODEL, messages=MESSAGES, **{limit_field: 5})
    assert plain.choices[0].finish_reason == "length"
    assert plain.choices[0].message.content == reply_text(MODEL, PROMPT, 5)
    assert plain.usage.completion_tokens == 5
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, **{limit_field: 5}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply_text(MODEL, PROMPT, 5)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage.completion_tokens == 5


def test_stop_sequence_cuts_the_reply_and_finishes_with_stop(sim):
    full = reply_text(MODEL, PROMPT)
    word = full.split()[2]
    completion = sim.openai().chat.completions.create(model=MODEL, messages=MESSAGES, stop=[word])
    assert completion.choices[0].message.content == full[: full.index(word)]
    assert completion.choices[0].finish_reason == "stop"


def test_multi_turn_history_and_content_parts_are_counted(sim):
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "First question?"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": [{"type": "text", "text": "Second"}, {"type": "text", "text": "question?"}]},
    ]
    completion = sim.openai().chat.completions.create(model=MODEL, messages=messages)
    expected = input_tokens(SYSTEM, "First question?", "First answer.", "Second question?")
    assert completion.usage.prompt_tokens == expected
    assert completion.choices[0].message.content == reply_text(MODEL, "Second\nquestion?")


def test_missing_or_invalid_key_gets_openai_401(sim):
    with pytest.raises(openai.AuthenticationError) as raised:
        sim.openai(key="invalid").chat.completions.create(model=MODEL, messages=MESSAGES)
    assert raised.value.body["code"] == "invalid_api_key"
    response = httpx.post(sim.url + "/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES})
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_bad_json_and_missing_fields_get_openai_400(sim):
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    response = httpx.post(sim.url + "/v1/chat/completions", content=b"{not json", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as raised:
        sim.openai().chat.completions.create(model=MODEL, messages=[])
    assert raised.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        sim.openai().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=0)
    with pytest.raises(openai.BadRequestError) as raised:  # as the real API: only streams take stream_options
        sim.openai().chat.completions.create(model=MODEL, messages=MESSAGES, stream_options={"include_usage": True})
    assert raised.value.body["param"] == "stream_options"


def test_models_are_listed(sim):
    assert MODEL in {model.id for model in sim.openai().models.list()}
    assert sim.openai().models.retrieve(MODEL).id == MODEL
