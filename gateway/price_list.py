"""The base price book: the model catalog's list prices, in force when no published
version is (ledger/price_books.py); and the book a re-pricing run replays usage
through (`twoapi reprice`, POST /admin/reprice)."""

from __future__ import annotations

from typing import Any

from adapters.catalog import Catalog, default_catalog
from ledger.price_books import PriceBookError, PriceBooks, book_of, parse_prices
from ledger.pricing import PriceBook
from ledger.repricing import file_version


class UnknownPriceBook(PriceBookError):
    """A version name that is neither `base` nor published."""


def base_price_book(catalog: Catalog | None = None) -> PriceBook:
    return PriceBook.from_table({m.id: m.price for m in (catalog or default_catalog()).models})


def repricing_book(ledger: Any, version: str | None = None, prices: Any = None,
                   books: PriceBooks | None = None) -> tuple[PriceBook, dict[str, dict[str, str]] | None]:
    """The book to re-price with, and the table when it is not a published version.

    `prices` is a {model: {unit: price}} table (validated by parse_prices; its version
    is named by its content, `file-<hash>`). Otherwise `version` names a published
    version, or `base` (or the base's own version) for the catalog's list prices.
    `books` is a PriceBooks to reuse (a gateway's); it is brought up to date first."""
    if prices is not None:
        table = parse_prices(prices)
        return book_of(file_version(table), table), table
    if books is None:
        books = PriceBooks(base_price_book())
    books.refresh(ledger)
    if version in ("base", books.base.version):
        return books.base, None
    for published in books.versions:
        if published.version == version:
            return published.book, None
    known = ", ".join(["base", *(v.version for v in books.versions)])
    raise UnknownPriceBook(f"no price-book version {version!r} (versions: {known})")


def canonical_models(table: dict[str, Any], catalog: Catalog | None = None) -> dict[str, Any]:
    """A price table with model aliases (`gpt-4o-mini`) as the catalog's ids
    (`openai/gpt-4o-mini`); names the catalog does not know are kept (a model since
    retired may still have usage). Raises PriceBookError when one model is priced twice."""
    catalog = catalog or default_catalog()
    canonical: dict[str, Any] = {}
    for model, row in table.items():
        info = catalog.find(model)
        name = info.id if info is not None else model
        if name in canonical:
            raise PriceBookError(f"{model}: {name} is priced twice")
        canonical[name] = row
    return canonical
