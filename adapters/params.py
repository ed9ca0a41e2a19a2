"""Which OpenAI chat parameters each provider honours, and how (pure: no I/O).

The rule: a parameter is mapped where the provider has it; where it has not, a request
that sets it to anything but its no-op default is refused with a 400 naming the
parameter and the provider, because ignoring it would change the result the client
gets. Parameters that do not change the output (`user`, `metadata`) are mapped where
there is a counterpart and otherwise not sent. `unsupported_parameter()` is asked by
the router (a candidate that cannot honour the request is excluded, and a request for
one explicit model gets the 400) and again by the adapters as they translate.

`SUPPORT` is the table docs/api-surface.md shows; a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# parameter -> (openai, anthropic, google)
SUPPORT: dict[str, tuple[str, str, str]] = {
    "n": ("native", "400 when > 1", "`generationConfig.candidateCount`"),
    "seed": ("native", "400", "`generationConfig.seed`"),
    "logprobs": ("native", "400 when true", "`generationConfig.responseLogprobs`"),
    "top_logprobs": ("native", "400 when > 0", "`generationConfig.logprobs`"),
    "presence_penalty": ("native", "400 when not 0", "`generationConfig.presencePenalty`"),
    "frequency_penalty": ("native", "400 when not 0", "`generationConfig.frequencyPenalty`"),
    "logit_bias": ("native", "400 when not empty", "400 when not empty"),
    "user": ("native", "`metadata.user_id`", "not sent (no counterpart; output unchanged)"),
    "metadata": ("native", "not sent (no counterpart; output unchanged)",
                 "not sent (no counterpart; output unchanged)"),
    "max_completion_tokens": ("native", "`max_tokens`", "`generationConfig.maxOutputTokens`"),
    "max_tokens": ("native", "`max_tokens`", "`generationConfig.maxOutputTokens`"),
    "reasoning_effort": ("native", "`thinking.budget_tokens` (low 1024, medium 4096, high 16384; "
                         "none/minimal: off)", "`generationConfig.thinkingConfig.thinkingBudget` "
                         "(low 1024, medium 8192, high 24576; none/minimal: 0)"),
    "temperature": ("native", "`temperature`; 400 when above 1 (Anthropic's range is 0-1)",
                    "`generationConfig.temperature`"),
    "top_p": ("native", "`top_p`", "`generationConfig.topP`"),
    "stop": ("native", "`stop_sequences`", "`generationConfig.stopSequences`"),
    "tools": ("native", "`tools` (`input_schema`)", "`functionDeclarations` (`parameters`, schema translated)"),
    "tool_choice": ("native", "`tool_choice` auto/any/tool/none", "`toolConfig.functionCallingConfig` AUTO/ANY/NONE"),
    "parallel_tool_calls": ("native", "`disable_parallel_tool_use`", "400 when false"),
    "response_format": ("native", "forced tool use, returned as content",
                        "`responseMimeType` + `responseSchema` (schema translated)"),
    "store": ("native", "400 when true", "400 when true"),
    "service_tier": ("native", "400 unless auto/default", "400 unless auto/default"),
    "modalities": ("native", "400 unless [\"text\"]", "400 unless [\"text\"]"),
    "audio": ("native", "400", "400"),
    "prediction": ("native", "400", "400"),
    "web_search_options": ("native", "400", "400"),
    "functions": ("native", "400 (use tools)", "400 (use tools)"),
    "function_call": ("native", "400 (use tool_choice)", "400 (use tool_choice)"),
}

Rule = tuple[str, Callable[[Any], bool], str]  # parameter, "is a problem" test, why


def _given(value: Any) -> bool:
    return True


def _true(value: Any) -> bool:
    return value is True


def _nonzero(value: Any) -> bool:
    return value != 0


def _not_default_tier(value: Any) -> bool:
    return value not in ("auto", "default")


def _not_text_only(value: Any) -> bool:
    return value != ["text"]


_COMMON: tuple[Rule, ...] = (
    ("logit_bias", bool, "it has no token bias"),
    ("store", _true, "only OpenAI stores completions"),
    ("service_tier", _not_default_tier, "it has no such service tier"),
    ("modalities", _not_text_only, "it answers chat requests with text only"),
    ("audio", _given, "it has no audio output"),
    ("prediction", _given, "it has no predicted outputs"),
    ("web_search_options", _given, "web search is an OpenAI tool"),
    ("functions", _given, "use 'tools' instead of the deprecated 'functions'"),
    ("function_call", _given, "use 'tool_choice' instead of the deprecated 'function_call'"),
)

RULES: dict[str, tuple[Rule, ...]] = {
    "openai": (),
    "anthropic": (
        ("n", lambda v: v != 1, "it returns one choice per request"),
        ("temperature", lambda v: v > 1, "its temperature range is 0 to 1"),
        ("seed", _given, "it has no sampling seed"),
        ("logprobs", _true, "it returns no log probabilities"),
        ("top_logprobs", _nonzero, "it returns no log probabilities"),
        ("presence_penalty", _nonzero, "it has no presence penalty"),
        ("frequency_penalty", _nonzero, "it has no frequency penalty"),
        *_COMMON,
    ),
    "google": (
        ("parallel_tool_calls", lambda v: v is False, "it cannot be limited to one tool call per turn"),
        *_COMMON,
    ),
}


THINKING_EFFORTS = ("low", "medium", "high")


def _anthropic_thinking(body: dict[str, Any]) -> tuple[str, str] | None:
    """Extended thinking on Anthropic excludes sampling changes and forced tool use."""
    if body.get("reasoning_effort") not in THINKING_EFFORTS:
        return None
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return "temperature", "'temperature' must be 1 (or unset) with 'reasoning_effort' on anthropic."
    top_p = body.get("top_p")
    if top_p is not None and top_p < 0.95:
        return "top_p", "'top_p' must be at least 0.95 (or unset) with 'reasoning_effort' on anthropic."
    choice = body.get("tool_choice")
    if choice == "required" or isinstance(choice, dict):
        return "tool_choice", "anthropic cannot force a tool call while 'reasoning_effort' is set."
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        return "response_format", ("anthropic gives structured output through a forced tool call, "
                                   "which cannot be combined with 'reasoning_effort'.")
    return None


COMBINATIONS: dict[str, Callable[[dict[str, Any]], tuple[str, str] | None]] = {
    "anthropic": _anthropic_thinking,
}


# provider -> {parameter: (problem test, why)}: a request's few fields are looked up,
# rather than every rule walked (this runs on every chat request).
_BY_NAME: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    provider: {name: (problem, why) for name, problem, why in rules} for provider, rules in RULES.items()
}


def unsupported_parameter(provider: str, body: dict[str, Any]) -> tuple[str, str] | None:
    """(parameter, message) of the first parameter `provider` cannot honour, else None."""
    rules = _BY_NAME.get(provider)
    if rules:
        for name, value in body.items():
            rule = rules.get(name)
            if rule is not None and value is not None and rule[0](value):
                return name, f"'{name}' is not supported by {provider}: {rule[1]}."
    combination = COMBINATIONS.get(provider)
    return combination(body) if combination is not None else None
