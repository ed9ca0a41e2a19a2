"""POST /admin/reprice: what usage would have cost under another price book (dry run).

The body names the book, either a published version (`price_book`: its name, or
`base` for the catalog's list prices) or a table (`prices`: {model: {unit: price}},
as for POST /admin/price-books), a window (`from` included, `to` excluded: ISO times
or dates, UTC; default the last 30 days) and optionally a `tenant`. The answer is the
re-pricing engine's report (ledger/repricing.py `plan()`): per tenant and model the
cost as it stands, the new cost and the delta, as exact decimal strings.

It never records anything. Applying a run (UsageRepriced corrections and balance
adjustments) is an audited action taken with `twoapi reprice --apply`. The replay reads
the whole ledger, so it runs in a worker thread, a couple at a time per process.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from quart import Blueprint, Response, current_app

from gateway.admin import TENANT_NAME, _authorize, _body
from gateway.errors import GatewayError
from gateway.price_list import UnknownPriceBook, canonical_models, repricing_book
from ledger.price_books import PriceBookError, parse_prices, parse_time
from ledger.pricing import ModelPrice
from ledger.repricing import plan

repricing_api = Blueprint("repricing", __name__, url_prefix="/admin")
repricing_api.before_request(_authorize)  # the Admin API's bearer token, as every /admin route

DEFAULT_WINDOW = timedelta(days=30)
CONCURRENT_PLANS = 2  # each replays the whole ledger in a worker thread
FIELDS = ("price_book", "prices", "from", "to", "tenant")


@repricing_api.post("/reprice")
async def reprice() -> Response:
    body = await _body()
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise GatewayError("invalid_request", f"unknown field(s) {', '.join(unknown)}; the fields are "
                           f"{', '.join(FIELDS)}", param=unknown[0])
    start, end = _window(body)
    services = current_app.extensions["twoapi"]
    tenant = await _tenant(services, body.get("tenant"))
    version, prices = _book_spec(services, body)
    try:
        book, table = await asyncio.to_thread(repricing_book, services.ledger, version, prices,
                                              services.price_books)
    except UnknownPriceBook as error:
        raise GatewayError("not_found", str(error)[0].upper() + str(error)[1:] + ".", param="price_book") from None
    except PriceBookError as error:
        raise GatewayError("invalid_request", str(error), param="prices") from None
    async with _gate():
        result = await asyncio.to_thread(plan, services.ledger, book, start, end, tenant, table)
    report = result.report()
    models = {line["model"] for line in report["lines"]}
    shown = {m: _price_row(book.prices[m]) for m in sorted(models) if m in book.prices}
    answer = {"object": "repricing_plan", "dry_run": True, **report, "prices": shown}
    return Response(orjson.dumps(answer), 200, content_type="application/json")


def _window(body: dict[str, Any]) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    bounds = []
    for name, default in (("from", None), ("to", now)):
        value = body.get(name)
        if value is None:
            bounds.append(default)
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise GatewayError("invalid_request", f"{name} is an ISO 8601 time or date (UTC)", param=name)
        try:
            bounds.append(parse_time(value))
        except (PriceBookError, ValueError, OverflowError, OSError):
            raise GatewayError("invalid_request", f"{name}: {value!r} is not an ISO 8601 time or date",
                               param=name) from None
    end = bounds[1]
    start = bounds[0] if bounds[0] is not None else end - DEFAULT_WINDOW
    if end <= start:
        raise GatewayError("invalid_request", "`to` must be after `from`", param="to")
    return start, end


async def _tenant(services: Any, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not TENANT_NAME.match(value):
        raise GatewayError("invalid_request", "tenant is a tenant's name", param="tenant")
    if await asyncio.to_thread(services.ledger.find_tenant, value) is None:
        raise GatewayError("not_found", f"No tenant {value}.", param="tenant")
    return value


def _book_spec(services: Any, body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(version, None) or (None, table): the table's model names as the catalog's ids."""
    version, prices = body.get("price_book"), body.get("prices")
    if (version is None) == (prices is None):
        raise GatewayError("invalid_request", "give either `price_book` (a published version, or \"base\") or "
                           "`prices` (a table {model: {unit: price}}), not both", param="price_book")
    if version is not None:
        if not isinstance(version, str) or not version.strip():
            raise GatewayError("invalid_request", "price_book is a version name, or \"base\"", param="price_book")
        return version.strip(), None
    try:
        table = parse_prices(prices)
    except PriceBookError as error:
        raise GatewayError("invalid_request", str(error), param="prices") from None
    try:
        return None, canonical_models(table, services.catalog)
    except PriceBookError as error:
        raise GatewayError("invalid_request", str(error), param="prices") from None


def _price_row(price: ModelPrice) -> dict[str, str]:
    row = {"input": str(price.input), "output": str(price.output), "cached_input": str(price.cached_input)}
    if price.image:
        row["image"] = str(price.image)
    return row


def _gate() -> asyncio.Semaphore:
    """At most CONCURRENT_PLANS replays at once in this process (its app and loop)."""
    extensions = current_app.extensions
    if "twoapi.repricing" not in extensions:
        extensions["twoapi.repricing"] = asyncio.Semaphore(CONCURRENT_PLANS)
    return extensions["twoapi.repricing"]
