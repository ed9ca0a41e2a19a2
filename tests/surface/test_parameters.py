"""Request parameters per provider: mapped where the provider has them (asserted on
what it received), a 400 naming the parameter and the provider where it has not, and
routing that skips a candidate that cannot honour the request."""

from __future__ import annotations

import openai
import pytest

from tests.surface.conftest import events_of

HI = [{"role": "user", "content": "Tell me something."}]


@pytest.mark.parametrize(("param", "value"), [
    ("n", 2), ("seed", 42), ("logprobs", True), ("presence_penalty", 0.4), ("frequency_penalty", 0.3),
    ("logit_bias", {"1234": 5}), ("temperature", 1.6), ("store", True), ("modalities", ["text", "audio"]),
])
def test_anthropic_refuses_what_it_cannot_honour_naming_parameter_and_provider(client, sim, param, value):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="anthropic/claude-3-5-sonnet", messages=HI, **{param: value})
    assert (caught.value.code, caught.value.param) == ("invalid_request", param)
    assert f"'{param}' is not supported by anthropic" in caught.value.message
    assert sim.requests(5) == []  # nothing reached the provider


def test_openai_gets_every_parameter_as_sent(client, sim):
    client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=HI, n=2, seed=42, presence_penalty=0.4, frequency_penalty=0.3,
        logprobs=True, top_logprobs=2, user="u-1", metadata={"team": "search"}, max_completion_tokens=30,
        logit_bias={"1234": 5}, store=True)
    sent = sim.last()["body"]
    assert {k: sent[k] for k in ("n", "seed", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
                                 "user", "metadata", "max_completion_tokens", "logit_bias", "store")} == {
        "n": 2, "seed": 42, "presence_penalty": 0.4, "frequency_penalty": 0.3, "logprobs": True, "top_logprobs": 2,
        "user": "u-1", "metadata": {"team": "search"}, "max_completion_tokens": 30, "logit_bias": {"1234": 5},
        "store": True}


def test_gemini_gets_them_mapped_into_generation_config(client, sim):
    client.chat.completions.create(
        model="google/gemini-2.5-flash", messages=HI, n=2, seed=42, presence_penalty=0.4, frequency_penalty=0.3,
        logprobs=True, top_logprobs=2, user="u-1", metadata={"team": "search"}, max_completion_tokens=30,
        reasoning_effort="medium")
    sent = sim.last()["body"]
    assert sent["generationConfig"] == {
        "candidateCount": 2, "seed": 42, "presencePenalty": 0.4, "frequencyPenalty": 0.3, "responseLogprobs": True,
        "logprobs": 2, "maxOutputTokens": 30, "thinkingConfig": {"thinkingBudget": 8192}}
    assert "u-1" not in str(sent) and "search" not in str(sent)  # no counterpart, output unchanged


def test_anthropic_gets_max_completion_tokens_user_and_thinking(client, sim):
    reply = client.chat.completions.create(model="anthropic/claude-sonnet-4", messages=HI, user="u-1",
                                           metadata={"team": "search"}, max_completion_tokens=3000,
                                           reasoning_effort="low")
    assert reply.choices[0].message.content
    sent = sim.last()["body"]
    assert (sent["max_tokens"], sent["metadata"], sent["thinking"]) == (
        3000, {"user_id": "u-1"}, {"type": "enabled", "budget_tokens": 1024})


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "google/gemini-1.5-flash"])
def test_n_gives_n_choices(client, sim, model):
    reply = client.chat.completions.create(model=model, messages=HI, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.message.content for c in reply.choices}) == 3
    chunks = list(client.chat.completions.create(model=model, messages=HI, n=2, stream=True))
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts[0] and texts[1] and texts[0] != texts[1]


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "google/gemini-1.5-flash"])
def test_logprobs_come_back_in_openai_shape(client, sim, model):
    reply = client.chat.completions.create(model=model, messages=HI, logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token for t in content)


def test_auto_routing_skips_providers_that_cannot_honour_a_parameter(client, sim, module_gateway):
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HI, seed=1,
        extra_body={"models": ["anthropic/claude-3-5-haiku", "google/gemini-1.5-flash"],
                    "routing": {"strategy": "quality"}})
    assert raw.headers["x-2api-model"] == "google/gemini-1.5-flash"
    routed = next(e for e in events_of(module_gateway, raw.headers["x-request-id"]) if e["event"] == "Routed")
    assert routed["candidates"][0]["excluded"] == "provider anthropic does not support the parameter seed"


def test_reasoning_effort_needs_a_reasoning_model(client, sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI, reasoning_effort="high")
    assert "does not support reasoning" in caught.value.message
    client.chat.completions.create(model="openai/o3-mini", messages=HI, reasoning_effort="high")
    assert sim.last()["body"]["reasoning_effort"] == "high"


@pytest.mark.parametrize(("body", "param"), [
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"metadata": {"k": 1}}, "metadata.k"),
    ({"n": 0}, "n"),
    ({"modalities": ["video"]}, "modalities"),
])
def test_bad_values_are_400s_naming_the_parameter(client, sim, body, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI, **body)
    assert caught.value.param == param


def test_an_embedding_model_for_chat_is_model_not_supported(client, sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="openai/text-embedding-3-small", messages=HI)
    assert (caught.value.code, caught.value.param) == ("model_not_supported", "model")
