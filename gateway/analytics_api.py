"""GET /admin/analytics/{query} and GET /v1/analytics/{query}.

The admin routes take the bearer TWOAPI_ADMIN_TOKEN and may pass `tenant` to narrow
a query. The tenant routes take an API key and answer only the tenant-visible part of
the catalogue, scoped to the key's tenant: the Scope is built from the key, and a
`tenant` parameter is refused rather than read. The dashboards use the admin routes;
nothing but the process owning the analytics store opens it.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from quart import Blueprint, Response, request

from analytics import queries
from analytics.metrics import prometheus_text
from analytics.service import AnalyticsUnavailable
from gateway.errors import GatewayError
from gateway.services import Services

SPECIAL = {
    "status": "where the analytics projection stands: position, ledger head, lag",
    "metrics": "the projection's lag in Prometheus text format",
    "reconciliation": "one tenant's totals from the ledger's events beside the analytics totals",
}


def analytics_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("analytics", __name__)

    @bp.get("/admin/analytics")
    async def admin_catalogue() -> Response:
        _admin(services)
        listing = [{"name": name, "summary": spec.summary, "tenant_visible": spec.tenant_visible}
                   for name, spec in queries.CATALOGUE.items()]
        listing += [{"name": name, "summary": summary, "tenant_visible": False} for name, summary in SPECIAL.items()]
        return _json({"object": "list", "data": listing})

    @bp.get("/admin/analytics/<name>")
    async def admin_query(name: str) -> Response:
        _admin(services)
        params = _args()
        if name == "status":
            return _json(await _guard(services.analytics.status()))
        if name == "metrics":
            status = await _guard(services.analytics.status())
            return Response(prometheus_text(status), 200, content_type="text/plain; version=0.0.4")
        if name == "reconciliation":
            tenant = params.get("tenant")
            if not tenant:
                raise GatewayError("invalid_request", "reconciliation is about one tenant: pass `tenant`.",
                                   param="tenant")
            report = await _guard(services.analytics.reconcile(tenant, services.ledger))
            return _json({**report, "projection": await _projected_balance(services, tenant)})
        return await _answer(services, name, params, queries.Scope(tenant=None))

    @bp.get("/v1/analytics")
    async def tenant_catalogue() -> Response:
        await services.authenticator.authenticate(request.headers.get("authorization"))
        listing = [{"name": name, "summary": spec.summary}
                   for name, spec in queries.CATALOGUE.items() if spec.tenant_visible]
        return _json({"object": "list", "data": listing})

    @bp.get("/v1/analytics/<name>")
    async def tenant_query(name: str) -> Response:
        caller = await services.authenticator.authenticate(request.headers.get("authorization"))
        spec = queries.CATALOGUE.get(name)
        if spec is None or not spec.tenant_visible:
            raise GatewayError("not_found", f"No analytics query {name!r} for tenants; GET /v1/analytics lists them.")
        return await _answer(services, name, _args(), queries.Scope(tenant=caller.tenant))

    return bp


async def _answer(services: Services, name: str, params: dict[str, str], scope: queries.Scope) -> Response:
    if name not in queries.CATALOGUE:
        raise GatewayError("not_found", f"No analytics query {name!r}; GET /admin/analytics lists them.")
    fmt = params.pop("format", "json")
    if fmt not in ("json", "csv"):
        raise GatewayError("invalid_request", "format must be json or csv", param="format")
    try:
        answer = await _guard(services.analytics.query(name, params, scope))
    except queries.QueryError as error:
        raise GatewayError("invalid_request", str(error), param=error.param) from None
    except KeyError:
        raise GatewayError("not_found", f"No analytics query {name!r}.") from None
    if fmt == "csv":
        return _csv(answer, name)
    return _json(answer)


async def _projected_balance(services: Services, tenant: str) -> dict[str, Any]:
    """The tenancy projection's balance for the tenant (ledger/projections), when this
    process has that projection's view; with the position it stands at."""
    view = getattr(services, "view", None)
    if view is None or not hasattr(view, "balances"):
        return {"available": False, "reason": "the tenancy projection's view is not open in this process"}
    balances = await asyncio.to_thread(view.balances)
    position = await asyncio.to_thread(view.position) if hasattr(view, "position") else None
    return {"available": True, "balance": balances.get("tenant:" + tenant), "position": position}


async def _guard(awaitable: Any) -> Any:
    try:
        return await awaitable
    except AnalyticsUnavailable as error:
        raise GatewayError(
            "analytics_unavailable",
            f"The analytics store is not available ({error}); chat is unaffected and the projection catches up "
            "when the store returns.",
            headers={"retry-after": "1"},
        ) from None


def _admin(services: Services) -> None:
    # The same rule as gateway/admin.py's (whose checks are private to its blueprint):
    # no admin token configured, no Admin API; otherwise a bearer token compared in
    # constant time. Tenant keys on /admin paths are refused by admin.py's app-wide hook.
    expected = services.settings.admin_token
    if not expected:
        raise GatewayError("permission_denied", "The Admin API is disabled: set TWOAPI_ADMIN_TOKEN to enable it.")
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GatewayError("authentication_error", "Missing admin token: send 'Authorization: Bearer <token>'.",
                           headers={"www-authenticate": "Bearer"})
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise GatewayError("authentication_error", "Incorrect admin token.", headers={"www-authenticate": "Bearer"})


def _args() -> dict[str, str]:
    return {name: request.args.get(name, "") for name in request.args}


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money stays exact on the wire
    if isinstance(value, UUID):
        return value.hex
    raise TypeError(type(value).__name__)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY)


def _json(value: Any) -> Response:
    return Response(dumps(value), 200, content_type="application/json")


def _csv(answer: dict[str, Any], name: str) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    columns = answer["columns"]
    writer.writerow(columns)
    for row in answer["data"]:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return Response(out.getvalue(), 200, {"content-disposition": f'attachment; filename="{name}.csv"'},
                    content_type="text/csv; charset=utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat() + ("" if value.tzinfo else "Z")
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet must not run a tenant name as a formula
    return str(value)
