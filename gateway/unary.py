"""Endpoints answered in one JSON body beside chat: embeddings and image generation.

Each request's story is recorded exactly as chat's is, with the same `ChatCall`
(gateway/chat.py): `Received` (endpoint `embeddings` / `images.generations`), `Routed`,
`AttemptStarted`, `AttemptFailed` / `RetryScheduled` / `AttemptSucceeded`,
`UsageMetered` (tokens for embeddings; images, plus tokens where the provider bills
them, for images) and `Completed` or `Failed`, committed before the response leaves.

Routing is the explicit model only: embeddings of two models live in different vector
spaces, so falling back to another model would silently hand back incomparable
vectors. A model without the endpoint's catalog capability is refused before any
upstream call: 400 `model_not_supported` (Anthropic has no embeddings or image API).
The attempt loop (retries with backoff, `retry-after`, the circuit breaker, the
deadline) is chat's (gateway/attempts.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import orjson
from quart import Response

from adapters.catalog import ModelInfo
from gateway.attempts import RetryPolicy, first_answer
from gateway.auth import Principal
from gateway.chat import ChatCall, error_response, estimate_tokens
from gateway.errors import GatewayError
from gateway.routing import Route, resolve_options
from gateway.routing_options import RoutingDefaults
from gateway.services import Services
from gateway.validation import parse_json_object

try:  # the tenancy work's admission check (status, allowed models, rate limits, balance)
    from gateway.admission import admit
except ImportError:  # pragma: no cover - until that work is in
    admit = None  # type: ignore[assignment]

Call = Callable[[Any, dict[str, Any], Any], Awaitable[Any]]


def explicit_route(services: Services, body: dict[str, Any], capability: str, what: str, started: float,
                   defaults: RoutingDefaults | None = None) -> Route:
    """The one-model route of a request for `model`, or the error that refuses it. Of the
    key's and tenant's routing defaults, `max_attempts` and `timeout_ms` apply here."""
    name = body["model"]
    model = services.catalog.find(name)
    if model is None or not services.is_configured(model):
        reason = "not in the catalog" if model is None else f"provider {model.provider} is not configured"
        raise GatewayError("model_not_found", f"The model '{name}' does not exist or is not available: {reason}.",
                           param="model")
    if not model.supports(capability):
        offered = [m.id for m in services.catalog.models if m.supports(capability) and services.is_configured(m)]
        raise GatewayError(
            "model_not_supported",
            f"{model.id} does not offer {what}" + (" (Anthropic has no such API)" if model.provider == "anthropic"
                                                  else "") + f". Models that do: {', '.join(offered) or 'none'}.",
            param="model",
        )
    candidate = {"requested": name, "model": model.id, "score": None, "excluded": None}
    options, sources = resolve_options(services, {"model": name}, defaults)
    in_force = {k: {"value": options[k], "from": sources[k]} for k in ("max_attempts", "timeout_ms")}
    return Route([model], "explicit", [candidate], "requested model", RetryPolicy(max_attempts=options["max_attempts"]),
                 started + options["timeout_ms"] / 1000, in_force)


def prompt_tokens(body: dict[str, Any] | None) -> int:
    """The request's `input` (embeddings) or `prompt` (images) in tokens, estimated:
    texts at about 4 characters a token, token arrays as they are."""
    given = (body or {}).get("input", (body or {}).get("prompt"))
    tokens = 0
    for item in given if isinstance(given, list) else [given]:
        if isinstance(item, str):
            tokens += estimate_tokens(len(item))
        elif isinstance(item, list):
            tokens += len(item)
        elif isinstance(item, int):
            tokens += 1
    return tokens


async def serve_unary(
    services: Services,
    principal: Principal,
    raw: bytes,
    *,
    endpoint: str,
    capability: str,
    what: str,
    validate: Callable[[dict[str, Any]], Any],
    call: Call,
    respond: Callable[[Any, ModelInfo], dict[str, Any]],
) -> Response:
    record = ChatCall(services, principal, endpoint=endpoint)
    body: dict[str, Any] | None = None
    try:
        body = parse_json_object(raw)
        record.received(raw, body)
        validate(body)
        if admit is not None:
            await admit(services, record, body)
        defaults = record.admission.routing if record.admission is not None else None
        chosen = explicit_route(services, body, capability, what, record.started_monotonic, defaults)
        record.routed(chosen)
        answer, model = await first_answer(
            services, record, chosen.chain, body, chosen.policy, chosen.deadline, False, call=call
        )
        record.provider, record.served_model, record.strategy = model.provider, model.id, chosen.strategy
        latency_ms = round((time.perf_counter() - record.started) * 1000, 3)
        record.attempt_succeeded(model, ttft_ms=None, latency_ms=latency_ms)
        cost = record.metered(model, answer.usage, "estimated" if getattr(answer, "estimated", False) else "provider")
        record.completed()
        await record.commit()
        payload = orjson.dumps(respond(answer, model))
        record.logged(200)
        return Response(payload, 200, record.headers(model, cost), content_type="application/json")
    except asyncio.CancelledError:  # the client left: recorded as chat records it
        record.abandoned(raw, body, prompt_tokens(body))
        raise
    except GatewayError as error:
        if not record.trace.entries:
            record.received(raw, body)
        record.failed(error)
        with suppress(GatewayError):  # the ledger being down must not mask the error
            await record.commit()
        record.logged(error.status, error.code)
        return error_response(error, record.headers())
