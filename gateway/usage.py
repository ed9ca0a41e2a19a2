"""GET /v1/usage: the calling tenant's requests, tokens, cost and balance.

Tenant-scoped by construction: the tenant comes from the API key, and no parameter
can name another. `start` and `end` are UTC dates (YYYY-MM-DD, or ISO times or unix
seconds, of which the date counts), both included; by default the current month
to today. `group_by` is `day` (default), `model` or `key`. Numbers come from the
tenancy projection, so they trail the ledger by its lag (`as_of` is the position).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from quart import Blueprint, Response, current_app, request

from gateway.errors import GatewayError
from ledger.accounts import money_text

usage_api = Blueprint("usage", __name__)

GROUPS = ("day", "model", "key")
PARAMS = frozenset({"start", "end", "group_by"})
MAX_DAYS = 366
ZERO = Decimal(0)


@usage_api.get("/v1/usage")
async def usage() -> Response:
    services = current_app.extensions["twoapi"]
    principal = await services.authenticator.authenticate(request.headers.get("authorization"))
    unknown = sorted(set(request.args) - PARAMS)
    if unknown:  # as OpenAI does with unknown fields; and no parameter may name a tenant
        raise GatewayError("invalid_request", f"Unknown parameter: {unknown[0]}.", param=unknown[0])
    group_by = request.args.get("group_by") or "day"
    if group_by not in GROUPS:
        raise GatewayError("invalid_request", f"group_by must be one of {', '.join(GROUPS)}", param="group_by")
    today = datetime.now(UTC).date()
    start = _day(request.args.get("start"), "start") or today.replace(day=1)
    end = _day(request.args.get("end"), "end") or today
    if end < start:
        raise GatewayError("invalid_request", "end is before start", param="end")
    if (end - start).days >= MAX_DAYS:
        raise GatewayError("invalid_request", f"at most {MAX_DAYS} days at a time", param="end")
    report = await asyncio.to_thread(_report, services.view, principal.tenant, start, end, group_by)
    return Response(orjson.dumps(report), 200, content_type="application/json")


def _report(view: Any, tenant: str, start: date, end: date, group_by: str) -> dict[str, Any]:
    rows = view.usage_rows(tenant, start, end + timedelta(days=1))
    keys = {k["key_id"]: k for k in view.keys(tenant)} if group_by == "key" else {}
    groups: dict[str, dict[str, Any]] = {}
    total = _zero()
    for row in rows:
        label = {"day": row["day"].isoformat(), "model": row["model"], "key": row["key_id"]}[group_by]
        group = groups.setdefault(label, _zero())
        for into in (group, total):
            for field in ("requests", "input_tokens", "output_tokens", "cached_tokens", "estimated"):
                into[field] += row[field]
            into["cost"] += row["cost"]
    data = []
    for label in sorted(groups):
        item: dict[str, Any] = {group_by if group_by != "key" else "key_id": label, **_money(groups[label])}
        if group_by == "key" and label in keys:
            item.update(prefix=keys[label]["prefix"], label=keys[label]["label"])
        data.append(item)
    state = view.tenant_state(tenant, datetime.now(UTC).strftime("%Y-%m"))
    return {
        "object": "usage",
        "tenant": tenant,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "group_by": group_by,
        "currency": "USD",
        "data": data,
        "total": _money(total),
        "balance": money_text(state["balance"] if state else ZERO),
        "month_spend": money_text(state["month_spend"] if state else ZERO),
        "as_of": view.position() or 0,
    }


def _zero() -> dict[str, Any]:
    return {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "estimated": 0, "cost": ZERO}


def _money(group: dict[str, Any]) -> dict[str, Any]:
    return {**group, "cost": money_text(group["cost"])}


def _day(value: str | None, param: str) -> date | None:
    if not value:
        return None
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), UTC).date()
        if len(value) == 10:
            return date.fromisoformat(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).date()
    except (ValueError, OverflowError, OSError):
        raise GatewayError("invalid_request", f"{param} must be a date (YYYY-MM-DD), an ISO time or unix seconds",
                           param=param) from None
