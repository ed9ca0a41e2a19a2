"""Price books and cost arithmetic.

Prices are USD per million tokens (or per unit), as exact Decimals. A request's cost is

    (input - cached) x input_price + cached x cached_input_price + output x output_price

divided by one million, plus `images x image_price` (USD per generated image; 0 for
models not billed per image), rounded once, half-to-even, to the ledger's quantum of
1e-9 USD (a nano-dollar). Each token is counted once: cached tokens are the part of
the input served from the provider's cache, billed at the cached price only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import orjson

QUANTUM = Decimal("0.000000001")
PER_MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


def quantize(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input: Decimal
    output: Decimal
    cached_input: Decimal
    image: Decimal = ZERO  # USD per generated image

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int, images: int = 0) -> Decimal:
        # Written out (no max(), no helper call): re-pricing runs this per usage event.
        uncached = input_tokens - cached_tokens if input_tokens > cached_tokens else 0
        amount = (uncached * self.input + cached_tokens * self.cached_input + output_tokens * self.output) / PER_MILLION
        if images:
            amount += images * self.image
        return amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class PriceBook:
    version: str
    prices: dict[str, ModelPrice]  # model id -> price

    def cost(self, model: str, input_tokens: int, output_tokens: int, cached_tokens: int, images: int = 0) -> Decimal:
        price = self.prices.get(model)
        if price is None:
            raise KeyError(f"price book {self.version} has no price for {model}")
        return price.cost(input_tokens, output_tokens, cached_tokens, images)

    @classmethod
    def from_table(cls, table: dict[str, dict[str, Decimal | str]], version: str | None = None) -> PriceBook:
        """A book from {model: {"input", "output", "cached_input", "image"?}}. Without a
        version name, the version is derived from the content, so the same table always
        has the same version."""
        prices = {
            model: ModelPrice(
                input=Decimal(str(row["input"])),
                output=Decimal(str(row["output"])),
                cached_input=Decimal(str(row.get("cached_input", row["input"]))),
                image=Decimal(str(row.get("image", 0))),
            )
            for model, row in table.items()
        }
        return cls(version=version or _content_version(prices), prices=prices)


def _content_version(prices: dict[str, ModelPrice]) -> str:
    canonical = orjson.dumps(
        # A per-image price is part of the content only when there is one, so books
        # without image prices keep the versions they always had.
        {m: [str(p.input), str(p.output), str(p.cached_input), *([str(p.image)] if p.image else [])]
         for m, p in prices.items()},
        option=orjson.OPT_SORT_KEYS,
    )
    return "list-" + hashlib.sha256(canonical).hexdigest()[:12]
