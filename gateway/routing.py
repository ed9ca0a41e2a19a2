"""Routing: from what the client asked for to an ordered chain of models to try.

- An explicit model, optionally followed by fallbacks (`models: [...]` as OpenRouter
  takes them, or `routing.fallbacks`), is tried in the order given.
- `model: "auto"` ranks every catalog model (or only those listed in `models`) by
  `routing.strategy`:
    cost     lowest estimated cost of this request (prompt estimate + expected output)
    latency  lowest expected time (live time-to-first-token and throughput estimates)
    quality  highest catalog quality score, within `routing.max_cost` if given
  and with no strategy named, `cost`.
Either way a candidate is excluded, with the reason recorded, when its provider is
not configured, it lacks a capability the request needs (streaming, tools, vision,
json, reasoning), its provider cannot honour a parameter the request sets
(adapters/params.py), the prompt does not fit its context window, or its circuit is
open. The
`Routed` event keeps every candidate with its score and any exclusion.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.catalog import ModelInfo
from adapters.params import unsupported_parameter
from gateway.attempts import RetryPolicy
from gateway.errors import GatewayError
from gateway.services import Services

STRATEGIES = ("cost", "latency", "quality")
DEFAULT_STRATEGY = "cost"
EXPECTED_OUTPUT_TOKENS = 256  # when the request sets no max_tokens
CHARS_PER_TOKEN = 4
ROUTING_FIELDS = frozenset({"strategy", "fallbacks", "max_attempts", "timeout_ms", "max_cost"})


@dataclass(slots=True)
class Route:
    chain: list[ModelInfo]
    strategy: str
    candidates: list[dict[str, Any]]
    reason: str
    policy: RetryPolicy
    deadline: float  # monotonic


def route(services: Services, body: dict[str, Any], started: float) -> Route:
    options = _routing_options(body)
    needs = required_capabilities(body)
    prompt_tokens = estimate_prompt_tokens(body)
    output_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or EXPECTED_OUTPUT_TOKENS
    auto = body["model"] == "auto"
    strategy = (options.get("strategy") or DEFAULT_STRATEGY) if auto else "explicit"
    names = body.get("models", []) if auto else [body["model"], *body.get("models", ()), *options.get("fallbacks", ())]
    # `auto` over the whole catalog ranks its chat models (embedding and image models
    # serve their own endpoints).
    models = _resolve(services, names) if names else [(m.id, m) for m in services.catalog.models if m.supports("chat")]

    candidates: list[dict[str, Any]] = []
    eligible: list[tuple[Any, ModelInfo]] = []
    seen: set[str] = set()
    problems = {m.provider: unsupported_parameter(m.provider, body) for _, m in models if m is not None}
    for requested, model in models:
        excluded = _exclusion(services, model, needs, prompt_tokens + output_tokens, seen, problems)
        score = _score(services, strategy, model, prompt_tokens, output_tokens) if model and not excluded else None
        if (
            strategy == "quality"
            and score is not None
            and "max_cost" in options
            and _estimated_cost(services, model, prompt_tokens, output_tokens) > options["max_cost"]
        ):
            excluded, score = f"estimated cost over max_cost {options['max_cost']}", None
        candidates.append({"requested": requested, "model": model.id if model else None,
                           "score": _jsonable(score), "excluded": excluded})
        if model is not None:
            seen.add(model.id)
        if excluded is None and model is not None:
            eligible.append((score, model))

    if not eligible:
        raise _no_candidate(candidates, needs, problems)
    if strategy != "explicit":
        eligible.sort(key=lambda pair: -pair[0] if strategy == "quality" else pair[0])
    chain = [model for _, model in eligible]
    timeout_s = options.get("timeout_ms", services.settings.request_timeout_s * 1000) / 1000
    policy = RetryPolicy(max_attempts=options["max_attempts"]) if "max_attempts" in options else RetryPolicy()
    return Route(chain, strategy, candidates, _reason(strategy, chain), policy, started + timeout_s)


def required_capabilities(body: dict[str, Any]) -> list[str]:
    needs = ["chat"]
    if body.get("stream"):
        needs.append("streaming")
    if body.get("tools") or body.get("functions"):
        needs.append("tools")
    if any(_has_image(m.get("content")) for m in body["messages"]):
        needs.append("vision")
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        needs.append("json")
    if body.get("reasoning_effort") is not None:
        needs.append("reasoning")
    return needs


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters of text in the request's messages (image and other parts not counted)."""
    chars = 0
    for message in body.get("messages", ()):
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return chars


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    return prompt_chars(body) // CHARS_PER_TOKEN + 4 * len(body["messages"])


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") == "image_url" for part in content
    )


def _resolve(services: Services, names: list[str]) -> list[tuple[str, ModelInfo | None]]:
    return [(name, services.catalog.find(name)) for name in names]


def _exclusion(
    services: Services, model: ModelInfo | None, needs: list[str], tokens: int, seen: set[str],
    problems: dict[str, tuple[str, str] | None],
) -> str | None:
    if model is None:
        return "not in the catalog"
    if model.id in seen:
        return "duplicate"
    if not services.is_configured(model):
        return f"provider {model.provider} is not configured"
    missing = [need for need in needs if not model.supports(need)]
    if missing:
        return "does not support " + ", ".join(missing)
    problem = problems.get(model.provider)
    if problem is not None:
        return f"provider {model.provider} does not support the parameter {problem[0]}"
    if tokens > model.context_window:
        return f"request needs ~{tokens} tokens, context window is {model.context_window}"
    if services.breakers.state(model.id) == "open":
        return "circuit open"
    return None


def _score(services: Services, strategy: str, model: ModelInfo, prompt_tokens: int, output_tokens: int) -> Any:
    if strategy == "cost":
        return _estimated_cost(services, model, prompt_tokens, output_tokens)
    if strategy == "latency":
        return round(services.latency.expected_ms(model.id, output_tokens), 3)
    if strategy == "quality":
        return model.quality
    return None


def _estimated_cost(services: Services, model: ModelInfo, prompt_tokens: int, output_tokens: int) -> Decimal:
    return services.price_book.cost(model.id, prompt_tokens, output_tokens, 0)


def _jsonable(score: Any) -> Any:
    return str(score) if isinstance(score, Decimal) else score


def _reason(strategy: str, chain: list[ModelInfo]) -> str:
    if strategy == "explicit":
        return "requested model" if len(chain) == 1 else "requested model, then the fallbacks given, in order"
    best = {"cost": "lowest estimated cost", "latency": "lowest expected latency", "quality": "highest quality"}
    return f"auto: {chain[0].id} has the {best[strategy]} of {len(chain)} eligible models"


def _no_candidate(
    candidates: list[dict[str, Any]], needs: list[str], problems: dict[str, tuple[str, str] | None]
) -> GatewayError:
    reasons = [c["excluded"] or "" for c in candidates]
    if all(r == "circuit open" for r in reasons):
        return GatewayError("provider_unavailable",
                            "Every candidate model's circuit is open after repeated failures; retry shortly.")
    if all(r in ("not in the catalog", "duplicate") or "not configured" in r for r in reasons):
        first = candidates[0]
        return GatewayError("model_not_found", f"The model '{first['requested']}' does not exist or is not "
                            f"available: {first['excluded']}.", param="model")
    if len(candidates) == 1 and "context window" in reasons[0]:
        return GatewayError("context_length_exceeded", f"The prompt does not fit: {reasons[0]}.", param="messages")
    if len(candidates) == 1 and reasons[0].startswith("does not support chat"):
        return GatewayError("model_not_supported", f"{candidates[0]['model']} does not offer chat completions "
                            "(it serves /v1/embeddings or /v1/images/generations).", param="model")
    if len(candidates) == 1 and "does not support the parameter" in reasons[0]:
        param, message = problems[reasons[0].split()[1]]  # type: ignore[misc]
        return GatewayError("invalid_request", message, param=param)
    if len(candidates) == 1 and "vision" in reasons[0]:
        return GatewayError("model_does_not_support_images",
                            f"{candidates[0]['model']} does not accept images.", param="messages")
    detail = "; ".join(f"{c['model'] or c['requested']}: {c['excluded']}" for c in candidates)
    return GatewayError("invalid_request", f"No model can serve this request: {detail}.", param="model")


def _routing_options(body: dict[str, Any]) -> dict[str, Any]:
    routing = body.get("routing") or {}
    for key in routing:
        if key not in ROUTING_FIELDS:
            expected = ", ".join(sorted(ROUTING_FIELDS))
            raise _bad(f"routing.{key}", f"unknown routing option; expected one of {expected}.")
    options: dict[str, Any] = {}
    strategy = routing.get("strategy")
    if strategy is not None:
        if strategy not in STRATEGIES:
            raise _bad("routing.strategy", f"expected one of {', '.join(STRATEGIES)}.")
        options["strategy"] = strategy
    fallbacks = routing.get("fallbacks")
    if fallbacks is not None:
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) and f for f in fallbacks):
            raise _bad("routing.fallbacks", "expected an array of model names.")
        options["fallbacks"] = fallbacks
    for key, low, high in (("max_attempts", 1, 10), ("timeout_ms", 100, 600_000)):
        value = routing.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _bad(f"routing.{key}", f"expected an integer between {low} and {high}.")
            options[key] = value
    if routing.get("max_cost") is not None:
        try:
            max_cost = Decimal(str(routing["max_cost"]))
        except InvalidOperation:
            max_cost = Decimal(-1)
        if not max_cost.is_finite() or max_cost < 0:
            raise _bad("routing.max_cost", "expected a non-negative amount in USD.")
        options["max_cost"] = max_cost
    return options


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError("invalid_request", f"Invalid value for '{param}': {message}", param=param)
