"""Cost arithmetic: exact decimals, each token counted once, one rounding."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from ledger.pricing import QUANTUM, ModelPrice, PriceBook

PRICE = ModelPrice(input=Decimal("3.00"), output=Decimal("15.00"), cached_input=Decimal("0.30"))


def test_cost_prices_uncached_cached_and_output_tokens_once_each():
    # 1000 input of which 400 cached: 600 x 3 + 400 x 0.3 + 200 x 15 = 4920 per million
    assert PRICE.cost(1000, 200, 400) == Decimal("0.004920000")


def test_cost_rounds_half_to_even_at_the_nano_dollar():
    price = ModelPrice(input=Decimal("0.0005"), output=Decimal("0"), cached_input=Decimal("0"))
    assert price.cost(1, 0, 0) == Decimal("0.000000000")  # 0.0000000005 -> even (0)
    assert price.cost(3, 0, 0) == Decimal("0.000000002")  # 0.0000000015 -> even (2)


@given(st.integers(0, 10**7), st.integers(0, 10**6), st.integers(0, 10**7))
def test_cost_is_exact_and_quantized(input_tokens, output_tokens, cached):
    cached = min(cached, input_tokens)
    cost = PRICE.cost(input_tokens, output_tokens, cached)
    exact = ((input_tokens - cached) * PRICE.input + cached * PRICE.cached_input + output_tokens * PRICE.output) / 10**6
    assert cost == exact.quantize(QUANTUM)
    assert cost.as_tuple().exponent == -9


def test_a_price_book_version_follows_its_content():
    table = {"m": {"input": "1", "output": "2", "cached_input": "0.5"}}
    assert PriceBook.from_table(table).version == PriceBook.from_table(dict(table)).version
    changed = {"m": {"input": "1", "output": "2.01", "cached_input": "0.5"}}
    assert PriceBook.from_table(table).version != PriceBook.from_table(changed).version


def test_images_are_priced_per_image_on_top_of_tokens():
    price = ModelPrice(input=Decimal("5"), output=Decimal("40"), cached_input=Decimal("1.25"), image=Decimal("0.04"))
    assert price.cost(10, 0, 0, images=3) == Decimal("0.120050000")  # 10 x 5 / 1e6 + 3 x 0.04
    assert price.cost(10, 0, 0) == Decimal("0.000050000")
    assert PRICE.image == 0 and PRICE.cost(1000, 200, 400, images=2) == Decimal("0.004920000")


def test_a_book_without_image_prices_keeps_its_version_and_an_image_price_changes_it():
    table = {"m": {"input": "1", "output": "2", "cached_input": "0.5"}}
    book = PriceBook.from_table(table)
    assert book.version == PriceBook.from_table({"m": {**table["m"], "image": "0"}}).version
    with_image = PriceBook.from_table({"m": {**table["m"], "image": "0.04"}})
    assert with_image.version != book.version
    assert with_image.cost("m", 0, 0, 0, images=2) == Decimal("0.080000000")
