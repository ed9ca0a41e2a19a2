"""`twoapi ledger export`: billable items, credits and adjustments, one line each.

Lines, in ledger order, of the events in a window (and of one tenant):

| kind       | from                          | cost                   | amount (balance move) |
|------------|-------------------------------|------------------------|-----------------------|
| usage      | Request.UsageMetered          | as charged             | -cost                 |
| reprice    | each RepricingRun correction  | new cost - old cost    | 0 (see its adjustment)|
| credit     | Tenant.CreditsAdded           | 0                      | +amount               |
| adjustment | Tenant.BalanceAdjusted        | 0                      | signed amount         |

So the `cost` column sums to the usage cost as it stands (what `/v1/usage` and the
projection's usage rows say), and `amount` to the change of the balance. Usage and
money lines are in the window by their time; a re-pricing line by the day of the
usage it corrects (a correction records the day, not the time), so windows of whole
days reconcile exactly. The file is written as the ledger is read: memory stays
constant however long the range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, BinaryIO
from uuid import UUID

import orjson

from ledger.accounts import money_text
from ledger.audit.scan import Owners, Row, rows, timestamp, topics
from ledger.events import RepricingRun, Request, Tenant
from ledger.price_books import PriceBooks, book_of
from ledger.pricing import ModelPrice, PriceBook

FORMATS = ("csv", "jsonl", "parquet")
COLUMNS = ("kind", "event_id", "request_id", "time", "tenant", "key_id", "provider", "model", "input_tokens",
           "output_tokens", "cached_tokens", "images", "source", "price_input", "price_output", "price_cached_input",
           "price_image", "price_book", "cost", "amount", "reference")
MONEY_COLUMNS = ("price_input", "price_output", "price_cached_input", "price_image", "cost", "amount")
INT_COLUMNS = ("input_tokens", "output_tokens", "cached_tokens", "images")
ZERO = Decimal(0)

(_CREATED, _CREDITS, _ADJUSTED, _RECEIVED, _METERED, _STARTED, _REPRICED) = TOPICS = topics(
    Tenant.Created, Tenant.CreditsAdded, Tenant.BalanceAdjusted, Request.Received, Request.UsageMetered,
    RepricingRun.Started, RepricingRun.UsageRepriced)


@dataclass(slots=True)
class Totals:
    lines: int = 0
    usage_cost: Decimal = ZERO  # usage and re-pricing lines: the usage cost as it stands
    credits: Decimal = ZERO
    adjustments: Decimal = ZERO
    balance_change: Decimal = ZERO  # the sum of `amount`

    def as_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "usage_cost": money_text(self.usage_cost), "credits": money_text(self.credits),
                "adjustments": money_text(self.adjustments), "balance_change": money_text(self.balance_change)}


class _Lines:
    """Turns stored events into export lines (dicts of COLUMNS)."""

    def __init__(self, ledger: Any, books: PriceBooks, start: datetime, end: datetime, tenant: str | None) -> None:
        self.books = books
        self.start, self.end, self.tenant = start, end, tenant
        self.owners = Owners(ledger)
        self.tenants: dict[UUID, str] = {}
        self.run_books: dict[UUID, PriceBook] = {}
        self.versions = {v.version: v.book for v in books.versions} | {books.base.version: books.base}

    def of(self, row: Row) -> Iterator[dict[str, Any]]:
        f = row.fields()
        topic = row.topic
        if topic == _CREATED:
            self.tenants[row.originator_id] = f["name"]
        elif topic == _RECEIVED:
            self.owners.received(row.originator_id, f)
        elif topic == _STARTED:
            prices = f["prices"]
            self.run_books[row.originator_id] = (book_of(f["price_book"], prices) if prices
                                                 else self.versions.get(f["price_book"], self.books.base))
        elif topic == _METERED:
            yield from self._usage(row, f)
        elif topic == _REPRICED:
            yield from self._repriced(row, f)
        else:  # credits and adjustments
            yield from self._money(row, f)

    def _in_window(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def _usage(self, row: Row, f: dict[str, Any]) -> Iterator[dict[str, Any]]:
        at = timestamp(f)
        if not self._in_window(at):
            return
        owner = self.owners.of(row.originator_id) or ("", "")
        if self.tenant is not None and owner[0] != self.tenant:
            return
        book = self.versions.get(f["price_book"])
        price = book.prices.get(f["model"]) if book is not None else None
        cost = Decimal(f["cost"])
        yield {**_prices(price), "kind": "usage", "event_id": row.event_id, "request_id": _request(row.originator_id),
               "time": at.isoformat(), "tenant": owner[0], "key_id": owner[1], "provider": f["provider"],
               "model": f["model"], "input_tokens": f["input_tokens"], "output_tokens": f["output_tokens"],
               "cached_tokens": f["cached_tokens"], "images": f.get("images", 0), "source": f["source"],
               "price_book": f["price_book"], "cost": cost, "amount": -cost, "reference": ""}

    def _repriced(self, row: Row, f: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if self.tenant is not None and f["tenant"] != self.tenant:
            return
        if not self._in_window(datetime.fromisoformat(f["day"]).replace(tzinfo=UTC)):
            return
        book = self.run_books.get(row.originator_id)
        price = book.prices.get(f["model"]) if book is not None else None
        for corrected, before, after in f["corrections"]:
            request = corrected.split("/", 1)[0]
            yield {**_prices(price), "kind": "reprice", "event_id": row.event_id,
                   "request_id": _request(UUID(request)), "time": f["day"], "tenant": f["tenant"],
                   "key_id": f["key_id"], "provider": "", "model": f["model"], "input_tokens": 0, "output_tokens": 0,
                   "cached_tokens": 0, "images": 0, "source": "", "price_book": f["price_book"],
                   "cost": Decimal(after) - Decimal(before), "amount": ZERO,
                   "reference": f"run {f['run_id']} corrects {corrected}"}

    def _money(self, row: Row, f: dict[str, Any]) -> Iterator[dict[str, Any]]:
        at = timestamp(f)
        tenant = self.tenants.get(row.originator_id, "")
        if not self._in_window(at) or (self.tenant is not None and tenant != self.tenant):
            return
        credit = row.topic == _CREDITS
        reference = f["reference"] if credit else (f["corrects"] or f["reason"])
        yield {**_prices(None), "kind": "credit" if credit else "adjustment", "event_id": row.event_id,
               "request_id": "", "time": at.isoformat(), "tenant": tenant, "key_id": "", "provider": "", "model": "",
               "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "images": 0, "source": "",
               "price_book": "", "cost": ZERO, "amount": Decimal(f["amount"]), "reference": reference}


def _prices(price: ModelPrice | None) -> dict[str, Decimal | None]:
    if price is None:
        return {"price_input": None, "price_output": None, "price_cached_input": None, "price_image": None}
    return {"price_input": price.input, "price_output": price.output, "price_cached_input": price.cached_input,
            "price_image": price.image}


def _request(request_id: UUID) -> str:
    return "req_" + request_id.hex


def lines(ledger: Any, books: PriceBooks, start: datetime, end: datetime,
          tenant: str | None = None) -> Iterator[dict[str, Any]]:
    """The export's lines, in ledger order."""
    maker = _Lines(ledger, books, start, end, tenant)
    for row in rows(ledger, only=TOPICS):
        yield from maker.of(row)


def export(ledger: Any, books: PriceBooks, out: BinaryIO, form: str, start: datetime, end: datetime,
           tenant: str | None = None) -> Totals:
    """Write the lines to `out` as csv, jsonl or parquet; their totals."""
    totals = Totals()

    def counted() -> Iterator[dict[str, Any]]:
        for line in lines(ledger, books, start, end, tenant):
            totals.lines += 1
            totals.usage_cost += line["cost"]
            totals.balance_change += line["amount"]
            if line["kind"] == "credit":
                totals.credits += line["amount"]
            elif line["kind"] == "adjustment":
                totals.adjustments += line["amount"]
            yield line

    WRITERS[form](counted(), out)
    return totals


def _text(value: Any) -> str:
    if value is None:
        return ""
    return money_text(value) if isinstance(value, Decimal) else str(value)


def _write_csv(items: Iterator[dict[str, Any]], out: BinaryIO) -> None:
    import csv
    import io

    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    for line in items:
        writer.writerow([_text(line[c]) for c in COLUMNS])
    text.flush()
    text.detach()


def _write_jsonl(items: Iterator[dict[str, Any]], out: BinaryIO) -> None:
    for line in items:
        out.write(orjson.dumps({c: (money_text(v) if isinstance(v := line[c], Decimal) else v) for c in COLUMNS}))
        out.write(b"\n")


def _write_parquet(items: Iterator[dict[str, Any]], out: BinaryIO, row_group: int = 50_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    money = pa.decimal128(38, 9)  # exact, the ledger's quantum
    schema = pa.schema([(c, money if c in MONEY_COLUMNS else pa.int64() if c in INT_COLUMNS else pa.string())
                        for c in COLUMNS])
    with pq.ParquetWriter(out, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for line in items:
            chunk.append(line)
            if len(chunk) >= row_group:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        writer.write_table(pa.Table.from_pylist(chunk, schema=schema))


WRITERS: dict[str, Callable[[Iterator[dict[str, Any]], BinaryIO], None]] = {
    "csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet,
}
