"""The base price book: the model catalog's list prices, in force when no published
version is (ledger/price_books.py)."""

from __future__ import annotations

from adapters.catalog import Catalog, default_catalog
from ledger.pricing import PriceBook


def base_price_book(catalog: Catalog | None = None) -> PriceBook:
    return PriceBook.from_table({m.id: m.price for m in (catalog or default_catalog()).models})
