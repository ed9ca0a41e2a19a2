"""The Admin API: tenants, keys, credits, limits, routing defaults, price books, provider
keys, projections.

Every request needs `Authorization: Bearer $TWOAPI_ADMIN_TOKEN`. Tenant API keys are
refused with 403 on every `/admin` path (this blueprint's and any other), whether
or not they are valid; without TWOAPI_ADMIN_TOKEN the Admin API is disabled (403).

Every write is an event on a Tenant, ApiKey, PriceBook or ProviderCredential
aggregate (ledger/application.py); reads come from the tenancy projection, after
waiting (briefly) for it to catch up, so an admin reads its own writes. Amounts are
decimal strings ("25.00"), never JSON floats. Provider keys are accepted, encrypted
and never returned.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from quart import Blueprint, Response, current_app, request

from gateway.config import PROVIDER_ENV
from gateway.errors import GatewayError
from gateway.routing_options import defaults_record
from ledger.accounts import MAX_AMOUNT, money_text
from ledger.application import KEY_PREFIX
from ledger.credentials import CredentialCipher, MasterKeyError
from ledger.price_books import PriceBookError, parse_prices, parse_time
from ledger.projections.runner import status as projection_status
from ledger.projections.runner import wait_caught_up

admin_api = Blueprint("admin", __name__, url_prefix="/admin")

TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_ID = re.compile(r"^[0-9a-f]{32}$")  # a key's aggregate id, as hex
READ_WAIT_S = 10.0  # how long a read waits for the projection to include earlier writes


def _services() -> Any:
    return current_app.extensions["twoapi"]


@admin_api.before_app_request
async def _refuse_tenant_keys() -> None:
    """Tenant keys get 403 on any /admin path, ours or another blueprint's."""
    if request.path == "/admin" or request.path.startswith("/admin/"):
        token = _token()
        if token is not None and token.startswith(KEY_PREFIX) and not _is_admin(token):
            raise GatewayError("permission_denied", "API keys cannot use the Admin API; use the admin token.")


@admin_api.before_request
async def _authorize() -> None:
    token = _token()
    if _services().settings.admin_token is None:
        raise GatewayError("permission_denied", "The Admin API is disabled: set TWOAPI_ADMIN_TOKEN to enable it.")
    if token is None:
        raise GatewayError("authentication_error", "Missing admin token: send 'Authorization: Bearer <token>'.",
                           headers={"www-authenticate": "Bearer"})
    if not _is_admin(token):
        raise GatewayError("authentication_error", "Incorrect admin token.", headers={"www-authenticate": "Bearer"})


def _token() -> str | None:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _is_admin(token: str) -> bool:
    expected = _services().settings.admin_token
    return expected is not None and hmac.compare_digest(token.encode(), expected.encode())


# -- tenants ---------------------------------------------------------------------------


@admin_api.post("/tenants")
async def create_tenant() -> Response:
    body = await _body()
    name = _tenant_name(body.get("name"))
    ledger = _services().ledger
    await _call(ledger.create_tenant, name)
    credits = body.get("credits")
    if credits is not None:
        await _call(ledger.add_credits, name, _amount(credits, "credits"), str(body.get("reference") or ""))
    return await _tenant_response(name, 201)


@admin_api.get("/tenants")
async def list_tenants() -> Response:
    await _caught_up()
    return _json({"object": "list", "data": await asyncio.to_thread(_services().view.tenants)})


@admin_api.get("/tenants/<tenant>")
async def show_tenant(tenant: str) -> Response:
    return await _tenant_response(tenant)


@admin_api.post("/tenants/<tenant>/suspend")
async def suspend_tenant(tenant: str) -> Response:
    body = await _body(optional=True)
    await _call(_services().ledger.suspend_tenant, await _known_tenant(tenant), str(body.get("reason") or ""))
    return await _tenant_response(tenant)


@admin_api.post("/tenants/<tenant>/reactivate")
async def reactivate_tenant(tenant: str) -> Response:
    body = await _body(optional=True)
    await _call(_services().ledger.reactivate_tenant, await _known_tenant(tenant), str(body.get("reason") or ""))
    return await _tenant_response(tenant)


@admin_api.put("/tenants/<tenant>/limits")
async def set_tenant_limits(tenant: str) -> Response:
    body = await _body()
    cap = body.get("monthly_cap")
    await _call(_services().ledger.set_tenant_limits, await _known_tenant(tenant), _limit(body, "rpm"),
                _limit(body, "tpm"), None if cap is None else _amount(cap, "monthly_cap", allow_zero=True))
    return await _tenant_response(tenant)


@admin_api.put("/tenants/<tenant>/routing")
async def set_tenant_routing(tenant: str) -> Response:
    """The tenant's routing defaults, as a whole (absent or null fields inherit)."""
    body = await _body()
    defaults = defaults_record(_services().catalog, body)
    await _call(_services().ledger.set_tenant_routing, await _known_tenant(tenant), defaults)
    return await _tenant_response(tenant)


async def _tenant_response(tenant: str, status: int = 200) -> Response:
    return _json({"object": "tenant", **await _tenant_detail(tenant)}, status)


async def _tenant_detail(tenant: str) -> dict[str, Any]:
    if not TENANT_NAME.match(tenant):  # no such name can exist (and a NUL is no SQL text)
        raise _no_tenant(tenant)
    services = _services()
    await _caught_up()
    services.gate.invalidate(tenant)
    detail = await asyncio.to_thread(services.view.tenant, tenant, datetime.now(UTC).strftime("%Y-%m"))
    if detail is None:
        raise _no_tenant(tenant)
    return detail


# -- keys ------------------------------------------------------------------------------


@admin_api.post("/tenants/<tenant>/keys")
async def issue_key(tenant: str) -> Response:
    body = await _body(optional=True)
    ledger = _services().ledger
    name = await _known_tenant(tenant)
    rpm, tpm, models = _limit(body, "rpm"), _limit(body, "tpm"), _models(body)
    issued = await _call(ledger.issue_key, name, str(body.get("label") or ""))
    if rpm is not None or tpm is not None or models is not None:
        await _call(ledger.set_key_limits, issued.key_id, rpm, tpm, models)
    return _json({
        "object": "api_key", "key": issued.secret, "key_id": issued.key_id, "prefix": issued.prefix,
        "tenant": issued.tenant, "label": str(body.get("label") or ""),
        "limits": {"rpm": rpm, "tpm": tpm, "allowed_models": models},
        "note": "The key is shown once; only its hash is stored.",
    }, 201)


@admin_api.get("/tenants/<tenant>/keys")
async def list_keys(tenant: str) -> Response:
    name = await _known_tenant(tenant)
    await _caught_up()
    return _json({"object": "list", "data": await asyncio.to_thread(_services().view.keys, name)})


@admin_api.delete("/keys/<key_id>")
async def revoke_key(key_id: str) -> Response:
    body = await _body(optional=True)
    ledger = _services().ledger
    key = await asyncio.to_thread(ledger.get_key, key_id)
    if key is None:
        raise GatewayError("not_found", f"No key {key_id}.")
    await _call(ledger.revoke_key, key_id, str(body.get("reason") or ""))
    _services().authenticator.forget(key.key_hash)  # here at once; other processes within a second
    return _json({"object": "api_key", "key_id": key_id, "tenant": key.tenant, "revoked": True})


@admin_api.put("/keys/<key_id>/limits")
async def set_key_limits(key_id: str) -> Response:
    body = await _body()
    services = _services()
    key = await asyncio.to_thread(services.ledger.get_key, key_id)
    if key is None:
        raise GatewayError("not_found", f"No key {key_id}.")
    await _call(services.ledger.set_key_limits, key_id, _limit(body, "rpm"), _limit(body, "tpm"), _models(body))
    services.authenticator.forget(key.key_hash)  # here at once; other processes within a second
    await _caught_up()
    return _json({"object": "api_key", **(await asyncio.to_thread(services.view.key, key_id) or {"key_id": key_id})})


@admin_api.get("/keys/<key_id>")
async def show_key(key_id: str) -> Response:
    return await _key_response(key_id)


@admin_api.put("/keys/<key_id>/routing")
async def set_key_routing(key_id: str) -> Response:
    """The key's routing defaults, as a whole (absent or null fields inherit the tenant's)."""
    body = await _body()
    services = _services()
    key = await asyncio.to_thread(services.ledger.get_key, key_id)
    if key is None:
        raise GatewayError("not_found", f"No key {key_id}.")
    await _call(services.ledger.set_key_routing, key_id, defaults_record(services.catalog, body))
    services.authenticator.forget(key.key_hash)  # here at once; other processes within a second
    return await _key_response(key_id)


async def _key_response(key_id: str) -> Response:
    if not KEY_ID.match(key_id):
        raise GatewayError("not_found", f"No key {key_id[:64]}.")
    services = _services()
    await _caught_up()
    key = await asyncio.to_thread(services.view.key, key_id)
    if key is None:
        raise GatewayError("not_found", f"No key {key_id}.")
    return _json({"object": "api_key", **key})


# -- money -----------------------------------------------------------------------------


@admin_api.post("/tenants/<tenant>/credits")
async def add_credits(tenant: str) -> Response:
    body = await _body()
    amount = _amount(body.get("amount"), "amount")
    reference = str(body.get("reference") or "")
    await _call(_services().ledger.add_credits, await _known_tenant(tenant), amount, reference)
    detail = await _tenant_detail(tenant)
    return _json({"object": "credit", "tenant": tenant, "amount": money_text(amount), "reference": reference,
                  "balance": detail["balance"]}, 201)


@admin_api.get("/tenants/<tenant>/credits")
async def list_credits(tenant: str) -> Response:
    return await _entries(tenant, "credit")


@admin_api.post("/tenants/<tenant>/adjustments")
async def adjust_balance(tenant: str) -> Response:
    body = await _body()
    amount = _amount(body.get("amount"), "amount", signed=True)
    reason = str(body.get("reason") or "")
    if not reason:
        raise GatewayError("invalid_request", "an adjustment needs a reason", param="reason")
    await _call(_services().ledger.adjust_balance, await _known_tenant(tenant), amount, reason,
                str(body.get("corrects") or ""))
    return await _tenant_response(tenant, 201)


@admin_api.get("/tenants/<tenant>/entries")
async def list_entries(tenant: str) -> Response:
    return await _entries(tenant, None)


async def _entries(tenant: str, kind: str | None) -> Response:
    name = await _known_tenant(tenant)
    await _caught_up()
    limit = request.args.get("limit", type=int)
    rows = await asyncio.to_thread(_services().view.entries, name, kind, "tenant:" + name, limit)
    data = [{**r, "amount": money_text(r["amount"]), "at": r["at"].isoformat()} for r in rows]
    return _json({"object": "list", "data": data})


# -- price books -------------------------------------------------------------------------


@admin_api.post("/price-books")
async def publish_price_book() -> Response:
    body = await _body()
    services = _services()
    try:
        prices = parse_prices(body.get("prices"))
        effective = parse_time(body["effective_at"]) if body.get("effective_at") is not None else datetime.now(UTC)
    except PriceBookError as error:
        raise GatewayError("invalid_request", str(error), param="prices") from None
    canonical = {}
    for model, row in prices.items():
        info = services.catalog.find(model)
        if info is None:
            raise GatewayError("invalid_request", f"{model} is not a model of the catalog", param="prices")
        canonical[info.id] = row
    version = body.get("version")
    if version is not None and (not isinstance(version, str) or not TENANT_NAME.match(version)):
        raise GatewayError("invalid_request", "version is a short name (letters, digits, . _ -)", param="version")
    version = await _call(services.ledger.publish_price_book, canonical, effective.isoformat(), version,
                          str(body.get("note") or ""))
    await asyncio.to_thread(services.price_books.refresh, services.ledger)
    return _json({"object": "price_book", "version": version, "effective_at": effective.isoformat(),
                  "prices": canonical}, 201)


@admin_api.get("/price-books")
async def list_price_books() -> Response:
    services = _services()
    books = services.price_books
    await asyncio.to_thread(books.refresh, services.ledger)
    now = datetime.now(UTC).timestamp()
    return _json({
        "object": "list",
        "base": {"version": books.base.version, "note": "the catalog's list prices"},
        "in_force": books.in_force(now).version,
        "data": [v.as_dict() for v in books.versions],
    })


# -- provider keys (bring your own key) ----------------------------------------------------


@admin_api.put("/tenants/<tenant>/provider-keys/<provider>")
async def set_provider_key(tenant: str, provider: str) -> Response:
    body = await _body()
    services = _services()
    name = await _known_tenant(tenant)
    if provider not in PROVIDER_ENV:
        raise GatewayError("invalid_request", f"provider is one of {', '.join(PROVIDER_ENV)}", param="provider")
    secret = body.get("api_key")
    if not isinstance(secret, str) or not secret.strip():
        raise GatewayError("invalid_request", "api_key is the provider key, a non-empty string", param="api_key")
    try:
        cipher = CredentialCipher.from_env(services.settings.master_key)
    except MasterKeyError as error:
        raise GatewayError("invalid_request", str(error)) from None
    await _call(services.ledger.set_provider_key, name, provider, cipher.seal(name, provider, secret.strip()))
    await _caught_up()
    services.gate.invalidate(name)
    return _json({"object": "provider_key", "tenant": name, "provider": provider, "stored": True})


@admin_api.delete("/tenants/<tenant>/provider-keys/<provider>")
async def remove_provider_key(tenant: str, provider: str) -> Response:
    services = _services()
    name = await _known_tenant(tenant)
    removed = await _call(services.ledger.remove_provider_key, name, provider, "removed by admin")
    await _caught_up()
    services.gate.invalidate(name)
    return _json({"object": "provider_key", "tenant": name, "provider": provider, "removed": removed})


# -- projections ----------------------------------------------------------------------------


@admin_api.get("/projections")
async def projections() -> Response:
    services = _services()
    report = await asyncio.to_thread(projection_status, services.ledger, services.view)
    worker = services.projection
    running = {"running_here": bool(worker and worker.leading), "restarts": worker.restarts if worker else 0}
    # The analytics projection beside it: a line saying why, when analytics is off or unreachable.
    from analytics.service import projection_line as analytics_line

    analytics = await analytics_line(services.analytics, services.ledger)
    return _json({"object": "list", "data": [{**report.as_dict(), **running}, analytics]})


# -- helpers -----------------------------------------------------------------------------------


async def _body(optional: bool = False) -> dict[str, Any]:
    raw = await request.get_data()
    if not raw.strip():
        if optional:
            return {}
        raise GatewayError("invalid_request", "a JSON object body is required")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError("invalid_json", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise GatewayError("invalid_request", "the body must be a JSON object")
    return body


async def _call(function: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(function, *args)
    except ValueError as error:
        message = str(error)
        if message.startswith("no tenant") or message.startswith("no key"):
            raise GatewayError("not_found", message[0].upper() + message[1:] + ".") from None
        raise GatewayError("invalid_request", message) from None


async def _caught_up() -> None:
    services = _services()
    await asyncio.to_thread(wait_caught_up, services.ledger, services.view, READ_WAIT_S)


async def _known_tenant(tenant: str) -> str:
    if not TENANT_NAME.match(tenant) or await asyncio.to_thread(_services().ledger.find_tenant, tenant) is None:
        raise _no_tenant(tenant)
    return tenant


def _no_tenant(tenant: str) -> GatewayError:
    return GatewayError("not_found", f"No tenant {tenant}.")


def _tenant_name(value: Any) -> str:
    if not isinstance(value, str) or not TENANT_NAME.match(value):
        raise GatewayError("invalid_request", "name: 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                           "or digit", param="name")
    return value


def _amount(value: Any, param: str, signed: bool = False, allow_zero: bool = False) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise GatewayError("invalid_request", f'{param} is a decimal string, e.g. "25.00" (not a JSON float)',
                           param=param)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise GatewayError("invalid_request", f"{param} is not a decimal amount", param=param) from None
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        raise GatewayError("invalid_request", f"{param} is out of range", param=param)
    if (amount < 0 and not signed) or (amount == 0 and not allow_zero):
        raise GatewayError("invalid_request", f"{param} must be a {'non-zero' if signed else 'positive'} amount",
                           param=param)
    if amount.as_tuple().exponent < -9:  # type: ignore[operator]
        raise GatewayError("invalid_request", f"{param} has more than 9 decimal places", param=param)
    return amount


def _limit(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GatewayError("invalid_request", f"{name} is a positive whole number, or null for no limit", param=name)
    return value


def _models(body: dict[str, Any]) -> list[str] | None:
    value = body.get("allowed_models")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise GatewayError("invalid_request", "allowed_models is a list of model ids, or null for every model",
                           param="allowed_models")
    catalog = _services().catalog
    unknown = [m for m in value if catalog.find(m) is None]
    if unknown:
        raise GatewayError("invalid_request", f"not models of the catalog: {', '.join(unknown)}",
                           param="allowed_models")
    return [catalog.find(m).id for m in value]


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, content_type="application/json")
