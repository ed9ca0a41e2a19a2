"""Latency set through `/_sim/latency` is observed by clients: time to first token and
token pacing, for plain and streamed requests (lower bounds only: machines are slow,
never fast)."""

from __future__ import annotations

import time

from tests.simulator.expect import output_tokens

MODEL = "gpt-4o-mini"
PROMPT = "Pace yourself."
MESSAGES = [{"role": "user", "content": PROMPT}]


def timed(call) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def test_ttft_delays_a_plain_answer(sim):
    sim.latency(provider="openai", ttft_ms=300)
    client = sim.openai()
    assert timed(lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES)) >= 0.3


def test_tokens_per_second_paces_a_plain_answer_by_its_output_length(sim):
    sim.latency(provider="anthropic", tokens_per_s=50)
    client = sim.anthropic()
    elapsed = timed(
        lambda: client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=100, messages=MESSAGES)
    )
    assert elapsed >= output_tokens("claude-3-5-haiku-20241022", PROMPT) / 50


def test_a_stream_waits_ttft_for_its_first_chunk_then_paces_the_tokens(sim):
    sim.latency(provider="openai", model=MODEL, ttft_ms=250, tokens_per_s=40)
    client = sim.openai()
    started = time.monotonic()
    arrivals = []
    for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
        arrivals.append(time.monotonic() - started)
    assert arrivals[0] >= 0.25
    tokens = output_tokens(MODEL, PROMPT)
    assert arrivals[-1] - arrivals[0] >= (tokens - 1) / 40


def test_gemini_streams_are_paced_too(sim):
    sim.latency(provider="google", ttft_ms=200, tokens_per_s=100)
    client = sim.genai()
    elapsed = timed(lambda: list(client.models.generate_content_stream(model="gemini-1.5-flash", contents=PROMPT)))
    assert elapsed >= 0.2 + (output_tokens("gemini-1.5-flash", PROMPT) - 1) / 100


def test_a_model_setting_overrides_its_providers_and_other_models_keep_it(sim):
    sim.latency(provider="openai", ttft_ms=400)
    sim.latency(provider="openai", model=MODEL, ttft_ms=0)
    client = sim.openai()
    assert timed(lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES)) < 0.4
    assert timed(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES)) >= 0.4
    listed = sim.control("GET", "latency")["latency"]
    assert {(entry["model"], entry["ttft_ms"]) for entry in listed} == {(None, 400), (MODEL, 0)}


def test_reset_removes_latency(sim):
    sim.latency(provider="openai", ttft_ms=500)
    sim.reset()
    client = sim.openai()
    assert timed(lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES)) < 0.5
