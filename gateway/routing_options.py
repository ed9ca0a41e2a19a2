"""Routing options: a request's `routing` object, and the routing defaults of keys and
tenants (`Tenant.RoutingSet`, `ApiKey.RoutingSet`).

Both take the same fields with the same rules (`parse_options`). Defaults are stored
as a whole, each field None to inherit; a request's routing is resolved field by field
in the order request > key > tenant > the gateway's configuration (gateway/routing.py).
This module imports nothing of the gateway's request path, so auth and admission can
parse stored defaults with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from adapters.catalog import Catalog

STRATEGIES = ("cost", "latency", "quality")
ROUTING_FIELDS = ("strategy", "fallbacks", "max_attempts", "timeout_ms", "max_cost")
INTEGER_RANGES = {"max_attempts": (1, 10), "timeout_ms": (100, 600_000)}
MAX_COST_LIMIT = Decimal(10) ** 9


@dataclass(frozen=True, slots=True)
class RoutingDefaults:
    """What routing needs from the caller: its key's and its tenant's defaults, most
    specific first (`(("key", options or None), ("tenant", options or None))`), and the
    key's allowed models (fallbacks taken from defaults must be among them)."""

    layers: tuple[tuple[str, dict[str, Any] | None], ...] = ()
    allowed_models: tuple[str, ...] | None = None


def parse_options(routing: dict[str, Any], prefix: str = "routing.") -> dict[str, Any]:
    """The options set in `routing` (None members left out), validated: fallbacks a
    list of names, max_cost a Decimal. A bad value raises a 400 naming `prefix + field`."""
    for key in routing:
        if key not in ROUTING_FIELDS:
            expected = ", ".join(sorted(ROUTING_FIELDS))
            raise _bad(prefix + key, f"unknown routing option; expected one of {expected}.")
    options: dict[str, Any] = {}
    strategy = routing.get("strategy")
    if strategy is not None:
        if strategy not in STRATEGIES:
            raise _bad(prefix + "strategy", f"expected one of {', '.join(STRATEGIES)}.")
        options["strategy"] = strategy
    fallbacks = routing.get("fallbacks")
    if fallbacks is not None:
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) and f for f in fallbacks):
            raise _bad(prefix + "fallbacks", "expected an array of model names.")
        options["fallbacks"] = fallbacks
    for key, (low, high) in INTEGER_RANGES.items():
        value = routing.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _bad(prefix + key, f"expected an integer between {low} and {high}.")
            options[key] = value
    if routing.get("max_cost") is not None:
        value = routing["max_cost"]
        try:
            max_cost = Decimal(str(value)) if not isinstance(value, bool) else Decimal(-1)
        except InvalidOperation:
            max_cost = Decimal(-1)
        if not max_cost.is_finite() or max_cost < 0 or max_cost >= MAX_COST_LIMIT:
            raise _bad(prefix + "max_cost", "expected a non-negative amount in USD.")
        options["max_cost"] = max_cost
    return options


def defaults_record(catalog: Catalog, body: Any) -> dict[str, Any]:
    """An Admin API body checked and made into a RoutingSet event's fields: every field
    present (None: inherit), fallbacks as catalog model ids, max_cost a decimal string.
    Unknown fields, bad values and models that are not chat models of the catalog are
    400s naming the field."""
    if not isinstance(body, dict):
        raise GatewayError("invalid_request", "the body must be a JSON object")
    if isinstance(body.get("max_cost"), float):
        raise _bad("max_cost", 'expected a decimal string in USD, e.g. "0.01" (not a JSON float).')
    options = parse_options(body, prefix="")
    fallbacks = None
    if "fallbacks" in options:
        fallbacks = []
        for name in options["fallbacks"]:
            model = catalog.find(name)
            if model is None:
                raise _bad("fallbacks", f"{name} is not a model of the catalog.")
            if not model.supports("chat"):
                raise _bad("fallbacks", f"{model.id} is not a chat model.")
            if model.id not in fallbacks:
                fallbacks.append(model.id)
    max_cost = options.get("max_cost")
    return {
        "strategy": options.get("strategy"),
        "fallbacks": fallbacks,
        "max_attempts": options.get("max_attempts"),
        "timeout_ms": options.get("timeout_ms"),
        "max_cost": None if max_cost is None else _decimal_text(max_cost),
    }


def stored_options(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Defaults as stored (validated when they were set) as options; None: none set."""
    if not record:
        return None
    try:
        options = parse_options({k: v for k, v in record.items() if k in ROUTING_FIELDS})
    except GatewayError:  # pragma: no cover - stored defaults were validated
        return None
    return options or None


def _decimal_text(amount: Decimal) -> str:
    text = format(amount, "f")
    return text if text != "-0" else "0"


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError("invalid_request", f"Invalid value for '{param}': {message}", param=param)
