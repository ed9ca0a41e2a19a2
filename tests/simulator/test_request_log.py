"""`/_sim/requests` shows what reached each provider (so gateway tests can assert on it),
never the secrets it carried; `/_sim/reset` forgets everything."""

from __future__ import annotations

import orjson
import pytest

from simulator.control import REQUEST_LOG_SIZE, SimState
from tests.simulator.conftest import KEY

MESSAGES = [{"role": "user", "content": "Log me."}]


def send_one_of_each(sim) -> None:
    sim.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=7)
    sim.anthropic().messages.create(model="claude-3-5-haiku-20241022", max_tokens=9, messages=MESSAGES)
    sim.http.post(
        f"/v1beta/models/gemini-1.5-flash:generateContent?key={KEY}",
        json={"contents": [{"role": "user", "parts": [{"text": "Log me."}]}]},
    )


def test_native_requests_are_logged_newest_last_with_their_json_bodies(sim):
    send_one_of_each(sim)
    logged = sim.requests(last=3)
    assert [entry["provider"] for entry in logged] == ["openai", "anthropic", "google"]
    assert [entry["method"] for entry in logged] == ["POST"] * 3
    assert [entry["path"] for entry in logged] == [
        "/v1/chat/completions",
        "/v1/messages",
        "/v1beta/models/gemini-1.5-flash:generateContent",
    ]
    assert logged[0]["body"] == {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 7}
    assert logged[1]["body"]["max_tokens"] == 9
    assert logged[1]["headers"]["anthropic-version"]
    assert sim.requests(last=1) == logged[-1:]


def test_secrets_are_redacted_from_headers_and_query(sim):
    send_one_of_each(sim)
    logged = sim.requests()
    openai_entry, anthropic_entry, google_entry = logged
    assert openai_entry["headers"]["authorization"] == "[redacted]"
    # This SDK sends its key as a bearer token; x-api-key (what the gateway sends) is redacted too.
    assert anthropic_entry["headers"]["authorization"] == "[redacted]"
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    sim.http.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": MESSAGES}, headers=headers)
    assert sim.requests(last=1)[0]["headers"]["x-api-key"] == "[redacted]"
    assert google_entry["query"] == {"key": "[redacted]"}
    assert KEY not in orjson.dumps(sim.requests()).decode()


def test_requests_that_fail_are_logged_too(sim):
    sim.fault(provider="openai", mode="status", status=500)
    with pytest.raises(Exception):  # noqa: B017 - which error is not the point here
        sim.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    sim.http.post("/v1/messages", content=b"{broken", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    logged = sim.requests()
    assert [entry["provider"] for entry in logged] == ["openai", "anthropic"]
    assert logged[1]["body"] is None


def test_reset_clears_the_log_faults_and_latency(sim):
    send_one_of_each(sim)
    sim.fault(provider="openai", mode="status", status=500)
    sim.latency(provider="openai", ttft_ms=1000)
    sim.reset()
    assert sim.requests() == []
    assert sim.control("GET", "faults")["faults"] == []
    assert sim.control("GET", "latency")["latency"] == []
    assert sim.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices


def test_the_log_is_a_bounded_ring_buffer():
    class FakeRequest:
        method = "POST"
        headers: dict[str, str] = {}

        def __init__(self, n: int) -> None:
            self.raw_path = f"/v1/chat/completions?n={n}"

    state = SimState()
    for n in range(REQUEST_LOG_SIZE + 5):
        state.record("openai", FakeRequest(n), {"n": n})
    logged = state.requests_json(None)
    assert len(logged) == REQUEST_LOG_SIZE
    assert logged[0]["body"] == {"n": 5} and logged[-1]["query"] == {"n": str(REQUEST_LOG_SIZE + 4)}


def test_model_lists_and_token_counts_are_logged_as_well(sim):
    sim.openai().models.list()
    sim.anthropic().messages.count_tokens(model="claude-3-5-haiku-20241022", messages=MESSAGES)
    sim.genai().models.count_tokens(model="gemini-1.5-flash", contents="Log me.")
    logged = sim.requests()
    assert [(entry["provider"], entry["method"]) for entry in logged] == [
        ("openai", "GET"),
        ("anthropic", "POST"),
        ("google", "POST"),
    ]
    assert logged[1]["body"]["messages"] == MESSAGES
    assert logged[2]["path"].endswith("gemini-1.5-flash:countTokens")
