"""A long system prompt seen before on this simulator is reported as cached, in each
provider's own usage fields."""

from __future__ import annotations

from simulator.control import CACHE_MIN_TOKENS
from simulator.text import count_tokens
from tests.simulator.expect import input_tokens

LONG_SYSTEM = " ".join(f"rule{n} applies." for n in range(CACHE_MIN_TOKENS // 3 + 1))
PROMPT = "What applies?"
MESSAGES = [{"role": "user", "content": PROMPT}]
CACHED = count_tokens(LONG_SYSTEM)


def test_the_long_system_prompt_is_long_enough():
    assert CACHED >= CACHE_MIN_TOKENS


def test_openai_reports_cached_tokens_within_prompt_tokens_on_a_repeat(sim):
    client = sim.openai()
    messages = [{"role": "system", "content": LONG_SYSTEM}, *MESSAGES]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens == CACHED
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == input_tokens(LONG_SYSTEM, PROMPT)
    other_model = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert other_model.usage.prompt_tokens_details.cached_tokens == 0


def test_anthropic_reports_cache_reads_outside_input_tokens(sim):
    client = sim.anthropic()
    model = "claude-3-5-sonnet-20241022"
    first = client.messages.create(model=model, max_tokens=50, system=LONG_SYSTEM, messages=MESSAGES)
    second = client.messages.create(model=model, max_tokens=50, system=LONG_SYSTEM, messages=MESSAGES)
    assert (first.usage.cache_read_input_tokens, first.usage.cache_creation_input_tokens) == (0, 0)
    assert first.usage.input_tokens == input_tokens(LONG_SYSTEM, PROMPT)
    assert second.usage.cache_read_input_tokens == CACHED
    assert second.usage.input_tokens == input_tokens(LONG_SYSTEM, PROMPT) - CACHED
    events = list(
        client.messages.create(model=model, max_tokens=50, system=LONG_SYSTEM, messages=MESSAGES, stream=True)
    )
    assert events[0].message.usage.cache_read_input_tokens == CACHED


def test_anthropic_reports_a_cache_write_when_the_system_prompt_asks_for_caching(sim):
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    message = sim.anthropic().messages.create(
        model="claude-3-5-haiku-20241022", max_tokens=50, system=system, messages=MESSAGES
    )
    assert message.usage.cache_creation_input_tokens == CACHED
    assert message.usage.input_tokens == input_tokens(LONG_SYSTEM, PROMPT) - CACHED


def test_gemini_counts_cached_tokens_inside_the_prompt_count(sim):
    from google.genai import types

    client = sim.genai()
    config = types.GenerateContentConfig(system_instruction=LONG_SYSTEM)
    client.models.generate_content(model="gemini-1.5-pro", contents=PROMPT, config=config)
    second = client.models.generate_content(model="gemini-1.5-pro", contents=PROMPT, config=config)
    assert second.usage_metadata.cached_content_token_count == CACHED
    assert second.usage_metadata.prompt_token_count == input_tokens(LONG_SYSTEM, PROMPT)


def test_short_system_prompts_are_never_cached_and_reset_forgets_the_cache(sim):
    client = sim.openai()
    short = [{"role": "system", "content": "Short."}, *MESSAGES]
    for _ in range(2):
        assert (
            client.chat.completions.create(
                model="gpt-4o-mini", messages=short
            ).usage.prompt_tokens_details.cached_tokens
            == 0
        )
    long_messages = [{"role": "system", "content": LONG_SYSTEM}, *MESSAGES]
    client.chat.completions.create(model="gpt-4o-mini", messages=long_messages)
    sim.reset()
    again = client.chat.completions.create(model="gpt-4o-mini", messages=long_messages)
    assert again.usage.prompt_tokens_details.cached_tokens == 0
