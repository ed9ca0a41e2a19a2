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
from decimal import Decimal
from typing import Any

from adapters.catalog import ModelInfo
from adapters.params import unsupported_parameter
from gateway.attempts import RetryPolicy
from gateway.errors import GatewayError
from gateway.routing_options import ROUTING_FIELDS, STRATEGIES, RoutingDefaults, parse_options
from gateway.services import Services

__all__ = ["ROUTING_FIELDS", "STRATEGIES", "Route", "route"]

EXPECTED_OUTPUT_TOKENS = 256  # when the request sets no max_tokens
CHARS_PER_TOKEN = 4

# Where a routing option came from, most specific first: the request's own `routing`
# (and `models`), the key's defaults, the tenant's defaults, the gateway's settings.
SOURCES = {"request": "the request", "key": "the key's defaults", "tenant": "the tenant's defaults",
           "config": "the gateway's configuration"}


@dataclass(slots=True)
class Route:
    chain: list[ModelInfo]
    strategy: str
    candidates: list[dict[str, Any]]
    reason: str
    policy: RetryPolicy
    deadline: float  # monotonic
    # The routing options in force, each {"value", "from"} (from: a key of SOURCES).
    options: dict[str, dict[str, Any]] | None = None


def route(services: Services, body: dict[str, Any], started: float, defaults: RoutingDefaults | None = None) -> Route:
    """`defaults`: the calling key's and tenant's routing defaults (the admission check
    gathers them)."""
    auto = body["model"] == "auto"
    options, sources = resolve_options(services, body, defaults)
    needs = required_capabilities(body)
    prompt_tokens = estimate_prompt_tokens(body)
    output_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or EXPECTED_OUTPUT_TOKENS
    strategy = options["strategy"] if auto else "explicit"
    names = body.get("models", []) if auto else [body["model"], *body.get("models", ()), *options.get("fallbacks", ())]
    # `auto` over the whole catalog ranks its chat models (embedding and image models
    # serve their own endpoints).
    models = _resolve(services, names) if names else [(m.id, m) for m in services.catalog.models if m.supports("chat")]
    # Fallbacks from a key's or tenant's defaults are not named by the request, so the
    # admission check has not seen them: the key's allowed models still bind them.
    allowed = None
    if defaults is not None and defaults.allowed_models is not None and sources.get("fallbacks") in ("key", "tenant"):
        allowed = {m.id if (m := services.catalog.find(n)) is not None else n for n in defaults.allowed_models}

    candidates: list[dict[str, Any]] = []
    eligible: list[tuple[Any, ModelInfo]] = []
    seen: set[str] = set()
    problems = {m.provider: unsupported_parameter(m.provider, body) for _, m in models if m is not None}
    for requested, model in models:
        excluded = _exclusion(services, model, needs, prompt_tokens + output_tokens, seen, problems)
        if excluded is None and allowed is not None and model is not None and model.id not in allowed:
            excluded = "not among the key's allowed models"
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
    policy = RetryPolicy(max_attempts=options["max_attempts"])
    deadline = started + options["timeout_ms"] / 1000
    in_force = {name: {"value": _jsonable(value), "from": sources[name]} for name, value in options.items()}
    if sources.get("fallbacks") == "request":  # `models`, then `routing.fallbacks`
        in_force["fallbacks"] = {"value": [*body.get("models", ()), *options.get("fallbacks", ())], "from": "request"}
    return Route(chain, strategy, candidates, _reason(strategy, chain, sources), policy, deadline, in_force)


def resolve_options(services: Services, body: dict[str, Any], defaults: RoutingDefaults | None = None) -> tuple[
        dict[str, Any], dict[str, str]]:
    """The routing options in force for this request, each from the most specific
    place that sets it (request > key > tenant > configuration), and where each came
    from. Only options that apply are resolved: `strategy` with model "auto",
    `fallbacks` after an explicit model (a request naming its own, in `models` or
    `routing.fallbacks`, replaces the defaults' list)."""
    own = parse_options(body.get("routing") or {})
    auto = body["model"] == "auto"
    layers = [("request", own), *((source, layer) for source, layer in (defaults.layers if defaults else ()) if layer)]
    settings = services.settings
    timeout_ms = settings.request_timeout_s * 1000
    configured = {
        "strategy": settings.routing_strategy,
        "max_attempts": settings.max_attempts,
        "timeout_ms": int(timeout_ms) if timeout_ms == int(timeout_ms) else timeout_ms,
    }
    options: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in ROUTING_FIELDS:
        if (name == "strategy" and not auto) or (name == "fallbacks" and auto):
            continue
        if name == "fallbacks" and (body.get("models") or "fallbacks" in own):
            sources[name] = "request"
            if "fallbacks" in own:
                options[name] = own["fallbacks"]
            continue
        for source, layer in layers:
            if name in layer:
                options[name], sources[name] = layer[name], source
                break
        else:
            if name in configured:
                options[name], sources[name] = configured[name], "config"
    return options, sources


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


def _reason(strategy: str, chain: list[ModelInfo], sources: dict[str, str] | None = None) -> str:
    sources = sources or {}
    if strategy == "explicit":
        if len(chain) == 1:
            return "requested model"
        given = sources.get("fallbacks", "request")
        where = "the fallbacks given" if given == "request" else f"the fallbacks of {SOURCES[given]}"
        return f"requested model, then {where}, in order"
    best = {"cost": "lowest estimated cost", "latency": "lowest expected latency", "quality": "highest quality"}
    reason = f"auto: {chain[0].id} has the {best[strategy]} of {len(chain)} eligible models"
    if "strategy" in sources:
        reason += f"; strategy {strategy} from {SOURCES[sources['strategy']]}"
    return reason


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
