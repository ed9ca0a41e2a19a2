"""Routing: from what the client asked for to an ordered chain of models to try.

Today: the requested model, then any explicit fallbacks (`models: [...]`, or
`routing.fallbacks`), each resolved in the catalog and kept only if its provider is
configured. Strategy-based `auto` routing plugs in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.catalog import ModelInfo
from gateway.errors import GatewayError
from gateway.services import Services


@dataclass(slots=True)
class Route:
    chain: list[ModelInfo]
    strategy: str
    candidates: list[dict[str, Any]]
    reason: str


def route(services: Services, body: dict[str, Any]) -> Route:
    requested = [body["model"], *body.get("models", ()), *_fallbacks(body)]
    if "auto" in requested:
        raise GatewayError(
            "invalid_request",
            "model 'auto' needs a routing strategy, which this gateway does not offer yet; "
            "name a model such as 'openai/gpt-4o-mini'.",
            param="model",
        )
    chain: list[ModelInfo] = []
    candidates: list[dict[str, Any]] = []
    for name in dict.fromkeys(requested):  # keep order, drop repeats
        model = services.catalog.find(name)
        excluded = None
        if model is None:
            excluded = "not in the catalog"
        elif not services.is_configured(model):
            excluded = f"provider {model.provider} is not configured"
        elif model in chain:
            excluded = "duplicate"
        candidates.append(
            {"requested": name, "model": model.id if model else None, "score": None, "excluded": excluded}
        )
        if excluded is None and model is not None:
            chain.append(model)
    if not chain:
        first = candidates[0]
        raise GatewayError(
            "model_not_found",
            f"The model '{first['requested']}' does not exist or is not available: {first['excluded']}.",
            param="model",
        )
    reason = "requested model" if len(chain) == 1 else "requested model, then explicit fallbacks"
    return Route(chain=chain, strategy="explicit", candidates=candidates, reason=reason)


def _fallbacks(body: dict[str, Any]) -> list[str]:
    routing = body.get("routing") or {}
    fallbacks = routing.get("fallbacks", [])
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) and f for f in fallbacks):
        raise GatewayError(
            "invalid_request", "Invalid value for 'routing.fallbacks': expected an array of model names.",
            param="routing.fallbacks",
        )
    return fallbacks
