"""Published price books: versions with an effective time, and which is in force.

The catalog's list prices are the base book (version `list-<hash>`), in force from
the beginning of time. `PriceBook.Published` events add versions; at any instant
the version in force is the one with the latest `effective_at` not after it (of two
with the same time, the later published). A request is priced by the version in
force when it was received. A model the version in force does not name is priced
from the base book, and the `UsageMetered` event then names the base version: it
always names the book whose prices were used.

Prices are USD per million tokens for `input`, `output`, `cached_input` (default:
the input price) and `embedding`, and USD per image for `image`, as Decimal strings.
Cost arithmetic and rounding are in ledger/pricing.py.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ledger.pricing import ModelPrice, PriceBook

UNITS = ("input", "output", "cached_input", "embedding", "image")


class PriceBookError(ValueError):
    """A price table that cannot be published."""


def parse_prices(table: Any) -> dict[str, dict[str, str]]:
    """Validate a {model: {unit: price}} table; prices as canonical Decimal strings."""
    if not isinstance(table, dict) or not table:
        raise PriceBookError("prices must be a non-empty object: {model: {unit: price}}")
    parsed: dict[str, dict[str, str]] = {}
    for model, row in table.items():
        if not isinstance(model, str) or not model:
            raise PriceBookError("model ids must be non-empty strings")
        if not isinstance(row, dict) or not row:
            raise PriceBookError(f"{model}: expected an object of unit prices")
        unknown = set(row) - set(UNITS)
        if unknown:
            raise PriceBookError(f"{model}: unknown price unit(s) {sorted(unknown)}; units are {list(UNITS)}")
        out: dict[str, str] = {}
        for unit, value in row.items():
            if isinstance(value, float):
                raise PriceBookError(f"{model}.{unit}: give prices as decimal strings, not floats")
            try:
                amount = Decimal(str(value))
            except InvalidOperation:
                raise PriceBookError(f"{model}.{unit}: {value!r} is not a decimal number") from None
            if not amount.is_finite() or amount < 0:
                raise PriceBookError(f"{model}.{unit}: prices are finite and not negative")
            out[unit] = str(amount)
        if ("input" in out) != ("output" in out):
            raise PriceBookError(f"{model}: token prices need both input and output")
        parsed[model] = out
    return parsed


def parse_time(value: Any) -> datetime:
    """An effective time: ISO 8601 (naive means UTC) or unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PriceBookError(f"not an ISO 8601 time: {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise PriceBookError("effective_at must be an ISO 8601 time or unix seconds")


def book_of(version: str, prices: dict[str, dict[str, str]]) -> PriceBook:
    """A published table as a PriceBook. An embedding model's `embedding` price is
    its input price; a model priced only per image has zero token prices."""
    book = {}
    for model, row in prices.items():
        input_price = row.get("input", row.get("embedding", "0"))
        book[model] = ModelPrice(
            input=Decimal(input_price),
            output=Decimal(row.get("output", "0")),
            cached_input=Decimal(row.get("cached_input", input_price)),
            image=Decimal(row.get("image", "0")),
        )
    return PriceBook(version=version, prices=book)


@dataclass(frozen=True, slots=True)
class Version:
    version: str
    effective_at: datetime
    published_at: datetime
    prices: dict[str, dict[str, str]]
    note: str
    book: PriceBook

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "effective_at": self.effective_at.isoformat(),
            "published_at": self.published_at.isoformat(),
            "prices": self.prices,
            "note": self.note,
        }


class PriceBooks:
    """The base book plus every published version, answering which is in force."""

    def __init__(self, base: PriceBook) -> None:
        self.base = base
        self._keys: list[tuple[float, int]] = []  # (effective unix time, publish order)
        self._versions: list[Version] = []
        self.position = 0  # the PriceBook aggregate's last version seen
        self._lock = threading.Lock()

    @property
    def versions(self) -> list[Version]:
        return sorted(self._versions, key=lambda v: (v.effective_at, v.published_at))

    def add(self, version: str, effective_at: str, prices: dict[str, dict[str, str]], note: str,
            published_at: datetime, position: int) -> None:
        with self._lock:
            if position <= self.position:
                return
            effective = parse_time(effective_at)
            entry = Version(version, effective, published_at, prices, note, book_of(version, prices))
            key = (effective.timestamp(), position)
            index = bisect.bisect(self._keys, key)
            self._keys.insert(index, key)
            self._versions.insert(index, entry)
            self.position = position

    def in_force(self, at: float) -> PriceBook:
        """The book in force at unix time `at`."""
        index = bisect.bisect(self._keys, (at, float("inf")))
        return self._versions[index - 1].book if index else self.base

    def cost(self, model: str, input_tokens: int, output_tokens: int, cached_tokens: int,
             at: float, images: int = 0) -> tuple[Decimal, str]:
        """(cost, version) of a request received at `at` (unix seconds)."""
        book = self.in_force(at)
        if model not in book.prices:
            book = self.base
        return book.cost(model, input_tokens, output_tokens, cached_tokens, images), book.version

    def refresh(self, ledger: Any) -> int:
        """Read versions published since the last refresh; how many were new."""
        from ledger.events import PriceBook as PriceBookAggregate

        new = 0
        for event in ledger.events.get(PriceBookAggregate.create_id(), gt=self.position or None):
            if isinstance(event, PriceBookAggregate.Published):
                self.add(event.version, event.effective_at, event.prices, event.note, event.timestamp,
                         event.originator_version)
                new += 1
            else:
                self.position = max(self.position, event.originator_version)
        return new
