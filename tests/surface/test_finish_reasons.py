"""finish_reason maps exactly, per provider, plain and streaming: stop, length,
tool_calls, content_filter (the simulator's provider-native safety stop)."""

from __future__ import annotations

import pytest

from tests.surface.conftest import events_of

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}
HI = [{"role": "user", "content": "Tell me a story."}]
CASES = {
    "stop": {},
    "length": {"max_tokens": 3},
    "tool_calls": {"tools": [TOOL]},
    "content_filter": {},
}


def finish_of(client, model: str, stream: bool, **options) -> tuple[str, str]:
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=HI, **options)
        return raw.parse().choices[0].finish_reason, raw.headers["x-request-id"]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HI, stream=True, **options)
    finishes = [c.choices[0].finish_reason for c in raw.parse() if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1
    return finishes[0], raw.headers["x-request-id"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("expected", list(CASES))
@pytest.mark.parametrize("model", MODELS)
def test_finish_reason_maps_exactly(client, sim, module_gateway, model, expected, stream):
    if expected == "content_filter":
        sim.fault(provider=model.split("/")[0], mode="content_filter")
    finish, request_id = finish_of(client, model, stream, **CASES[expected])
    assert finish == expected
    if stream:
        summary = next(e for e in events_of(module_gateway, request_id) if e["event"] == "StreamSummarized")
        assert summary["finish_reason"] == expected
