"""Property-based tests of the ledger's money (hypothesis): random sequences of
credits, requests (plain and streaming, with cached tokens), price-book changes and
re-pricings, written as the gateway writes them, on SQLite and PostgreSQL.

After each sequence: the projection's entries sum to its balances; the balances
recomputed by replaying the events equal the projected ones; `verify` is clean;
re-pricing with the book a run applied gives zero delta; applying a run twice is
applying it once."""

from __future__ import annotations

import itertools
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.price_list import base_price_book
from ledger.accounts import replay_balances
from ledger.application import Ledger
from ledger.audit.verify import verify
from ledger.events import Request
from ledger.price_books import PriceBooks, book_of
from ledger.projections.runner import catch_up, close_view, open_view
from ledger.repricing import apply, plan
from ledger.trace import RequestTrace
from ledger.writer import LedgerWriter
from tests.support import drop_schema, postgres_schema_url

TENANTS = ("acme", "beta", "gamma")
MODELS = ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "google/gemini-1.5-flash")
PRICE = st.decimals(min_value=Decimal("0"), max_value=Decimal("30"), places=3)

credit = st.tuples(st.just("credit"), st.sampled_from(TENANTS),
                   st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal("100"), places=9))
request = st.tuples(st.just("request"), st.sampled_from(TENANTS), st.sampled_from(MODELS),
                    st.integers(0, 20_000), st.integers(0, 4_000), st.integers(0, 20_000), st.booleans())
publish = st.tuples(st.just("publish"), st.sampled_from(MODELS), PRICE, PRICE)
reprice = st.tuples(st.just("reprice"), st.sampled_from(MODELS), PRICE, PRICE,
                    st.one_of(st.none(), st.sampled_from(TENANTS)))
STEPS = st.lists(st.one_of(credit, request, request, publish, reprice), min_size=1, max_size=25)


class World:
    """A ledger written to as the gateway writes it."""

    def __init__(self, database_url: str | None, data_dir: Path) -> None:
        self.database_url, self.data_dir = database_url, data_dir
        self.ledger = Ledger.open(database_url, data_dir)
        self.writer = LedgerWriter(self.ledger)
        self.view = open_view(database_url, data_dir)
        self.base = base_price_book()
        self.books = PriceBooks(self.base)
        self.versions = itertools.count(1)
        self.keys = {}
        for tenant in TENANTS:
            self.ledger.create_tenant(tenant)
            self.keys[tenant] = self.ledger.issue_key(tenant).key_id

    def close(self) -> None:
        self.writer.close()
        close_view(self.view)
        self.ledger.close()

    def credit(self, tenant: str, amount: Decimal) -> None:
        self.ledger.add_credits(tenant, amount, reference="property")

    def request(self, tenant: str, model: str, input_tokens: int, output_tokens: int, cached: int,
                stream: bool) -> None:
        cached = min(cached, input_tokens)
        self.books.refresh(self.ledger)
        cost, version = self.books.cost(model, input_tokens, output_tokens, cached, at=time.time())
        trace = RequestTrace(uuid.uuid4())
        trace.add(Request.Received, tenant=tenant, key_id=self.keys[tenant], endpoint="chat.completions",
                  model=model, stream=stream, body_bytes=100, body_sha256="0" * 64, messages=1)
        if stream:
            trace.add(Request.StreamSummarized, chunks=3, bytes=300, ttft_ms=1.0, duration_ms=2.0,
                      finish_reason="stop", client_disconnected=False)
        trace.add(Request.UsageMetered, provider=model.split("/")[0], model=model, input_tokens=input_tokens,
                  output_tokens=output_tokens, cached_tokens=cached, source="provider", price_book=version,
                  cost=str(cost))
        trace.add(Request.Completed, status=200, latency_ms=2.0)
        self.writer.submit(trace).result(timeout=10)

    def publish(self, model: str, input_price: Decimal, output_price: Decimal) -> None:
        prices = {model: {"input": str(input_price), "output": str(output_price)}}
        self.ledger.publish_price_book(prices, datetime.now(UTC).isoformat(), version=f"v{next(self.versions)}")

    def reprice(self, model: str, input_price: Decimal, output_price: Decimal, tenant: str | None) -> None:
        prices = {model: {"input": str(input_price), "output": str(output_price)}}
        book = book_of(f"t{next(self.versions)}", prices)
        window = (datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1))
        run = plan(self.ledger, book, *window, tenant=tenant, prices=prices)
        head = self.ledger.recorder.max_notification_id()
        first = apply(self.ledger, run)
        assert not first.already
        middle = self.ledger.recorder.max_notification_id()
        again = apply(self.ledger, plan(self.ledger, book, *window, tenant=tenant, prices=prices, run_id=run.run_id))
        assert again.already and again.deltas == first.deltas  # apply twice == apply once
        assert self.ledger.recorder.max_notification_id() == middle > head
        assert plan(self.ledger, book, *window, tenant=tenant).changed == 0  # the same book: zero delta

    def check(self) -> None:
        assert catch_up(self.database_url, self.data_dir, self.ledger, self.view, timeout=30)
        projected = {a: v for a, v in self.view.balances().items() if v}
        assert {a: v for a, v in self.view.entry_sums().items() if v} == projected  # entries sum to balances
        assert {a: v for a, v in replay_balances(self.ledger).items() if v} == projected  # replay == projection
        assert sum(projected.values(), Decimal(0)) == 0  # double entry: every movement has two sides
        report = verify(self.ledger, self.base, self.view)
        assert report.ok, [str(f) for f in report.findings]


def run_steps(database_url: str | None, data_dir: Path, steps: list[tuple[Any, ...]]) -> None:
    world = World(database_url, data_dir)
    try:
        for name, *args in steps:
            getattr(world, name)(*args)
        world.check()
    finally:
        world.close()


PROFILE = settings(deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@settings(PROFILE, max_examples=25)
@given(steps=STEPS)
def test_money_properties_hold_for_random_histories_on_sqlite(steps):
    with tempfile.TemporaryDirectory() as data_dir:
        run_steps(None, Path(data_dir), steps)


@settings(PROFILE, max_examples=8)
@given(steps=STEPS)
def test_money_properties_hold_for_random_histories_on_postgres(postgres_available, steps):
    url, schema = postgres_schema_url()
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            run_steps(url, Path(data_dir), steps)
    finally:
        drop_schema(schema)
