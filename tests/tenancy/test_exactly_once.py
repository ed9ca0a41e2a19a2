"""The tenancy projection applies each event exactly once: the sum of a tenant's entries,
its projected balance and its balance recomputed by replaying the ledger agree to the
nano-dollar, after thousands of mixed requests, after `kill -9` of the projection
process mid-stream, with two projections racing, and after a rebuild."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.catalog import default_catalog
from ledger.accounts import replay_balances, tenant_account
from ledger.application import Ledger
from ledger.events import Request
from ledger.pricing import PriceBook
from ledger.projections.runner import (
    Lease,
    ProjectionWorker,
    catch_up,
    close_view,
    open_view,
    rebuild,
    status,
    wait_caught_up,
)
from ledger.trace import RequestTrace
from ledger.writer import LedgerWriter

TWOAPI = str(Path(sys.executable).with_name("twoapi"))
CATALOG = default_catalog()
BOOK = PriceBook.from_table({m.id: m.price for m in CATALOG.models})
MODELS = [m.id for m in CATALOG.models if "input" in m.price][:6]
ZERO = Decimal(0)


@pytest.fixture
def store(tmp_path: Path, store_url: str | None) -> Iterator[tuple[Ledger, Any, str | None, Path]]:
    ledger = Ledger.open(store_url, tmp_path)
    view = open_view(store_url, tmp_path)
    yield ledger, view, store_url, tmp_path
    close_view(view)
    ledger.close()


# -- writing traffic straight to the ledger (as the gateway's writer does) --------------


def request_trace(tenant: str, key_id: str, model: str, input_tokens: int, output_tokens: int,
                  cached: int, source: str = "provider", failed: bool = False) -> RequestTrace:
    trace = RequestTrace(uuid.uuid4())
    trace.add(Request.Received, tenant=tenant, key_id=key_id, endpoint="chat.completions", model=model,
              stream=source == "estimated", body_bytes=100, body_sha256="0" * 64, messages=1)
    if failed:
        trace.add(Request.Failed, status=502, error_code="upstream_error", message="x", latency_ms=1.0)
        return trace
    cost = BOOK.cost(model, input_tokens, output_tokens, cached)
    trace.add(Request.UsageMetered, provider=model.split("/")[0], model=model, input_tokens=input_tokens,
              output_tokens=output_tokens, cached_tokens=cached, source=source, price_book=BOOK.version,
              cost=format(cost, "f"))
    trace.add(Request.Completed, status=200, latency_ms=1.0)
    return trace


def setup_tenants(ledger: Ledger, names: list[str]) -> dict[str, list[str]]:
    keys = {}
    for name in names:
        ledger.create_tenant(name)
        keys[name] = [ledger.issue_key(name, label=f"k{i}").key_id for i in range(2)]
    return keys


def apply(ledger: Ledger, writer: LedgerWriter, keys: dict[str, list[str]], ops: list[tuple]) -> None:
    tenants = list(keys)
    futures = []
    for op in ops:
        tenant = tenants[op[1] % len(tenants)]
        if op[0] == "credit":
            ledger.add_credits(tenant, Decimal(op[2]), reference=f"INV-{op[2]}")
        elif op[0] == "adjust":
            ledger.adjust_balance(tenant, Decimal(op[2]), reason="correction", corrects="req_x")
        else:
            _, _, key, model, input_tokens, output_tokens, cached, source, failed = op
            trace = request_trace(tenant, keys[tenant][key % 2], MODELS[model % len(MODELS)], input_tokens,
                                  output_tokens, min(cached, input_tokens), source, failed)
            futures.append(writer.submit(trace))
    for future in futures:
        future.result(60)


def assert_consistent(ledger: Ledger, view: Any, tenants: list[str] | None = None) -> dict[str, Decimal]:
    projected = view.balances()
    replayed = replay_balances(ledger)
    assert projected == replayed
    entries = view.entries()
    assert sum((e["amount"] for e in entries), ZERO) == ZERO  # double entry
    assert len({(e["event_id"], e["account"]) for e in entries}) == len(entries)  # nothing applied twice
    for tenant in tenants or []:
        account = tenant_account(tenant)
        from_entries = sum((e["amount"] for e in entries if e["account"] == account), ZERO)
        assert from_entries == projected.get(account, ZERO) == replayed.get(account, ZERO)
        state = view.tenant_state(tenant, time.strftime("%Y-%m", time.gmtime()))
        assert state is not None and state["balance"] == from_entries
    return projected


amounts = st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal("500"), places=9)
operation = st.one_of(
    st.tuples(st.just("credit"), st.integers(0, 9), amounts.map(str)),
    st.tuples(st.just("adjust"), st.integers(0, 9),
              st.one_of(amounts, amounts.map(lambda a: -a)).map(str)),
    st.tuples(st.just("request"), st.integers(0, 9), st.integers(0, 1), st.integers(0, 9),
              st.integers(0, 200_000), st.integers(0, 50_000), st.integers(0, 200_000),
              st.sampled_from(["provider", "provider", "estimated"]), st.just(False)),
    st.tuples(st.just("request"), st.integers(0, 9), st.integers(0, 1), st.integers(0, 9),
              st.integers(1, 5000), st.integers(0, 5000), st.integers(0, 5000), st.just("provider"), st.just(True)),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.data_too_large])
@given(ops=st.lists(operation, min_size=1, max_size=400))
def test_entries_projection_and_replay_agree_to_the_nanodollar(store, ops):
    ledger, view, url, data_dir = store
    prefix = uuid.uuid4().hex[:8]
    keys = setup_tenants(ledger, [f"{prefix}-{i}" for i in range(3)])
    writer = LedgerWriter(ledger)
    try:
        apply(ledger, writer, keys, ops)
    finally:
        writer.close()
    assert catch_up(url, data_dir, ledger, view, timeout=60)
    assert_consistent(ledger, view, list(keys))


def test_thousands_of_mixed_requests_while_the_projection_follows(store):
    ledger, view, url, data_dir = store
    rng = random.Random(5)
    keys = setup_tenants(ledger, [f"t{i}" for i in range(5)])
    worker = ProjectionWorker(url, data_dir).start()
    writer = LedgerWriter(ledger)
    try:
        for _round in range(6):
            ops: list[tuple] = [("credit", rng.randrange(5), str(Decimal(rng.randrange(1, 10**6)) / 1000))]
            for _ in range(500):
                ops.append(("request", rng.randrange(5), rng.randrange(2), rng.randrange(9), rng.randrange(10**5),
                            rng.randrange(10**4), rng.randrange(10**5), rng.choice(["provider", "estimated"]),
                            rng.random() < 0.1))
            ops.append(("adjust", rng.randrange(5), "-0.123456789"))
            apply(ledger, writer, keys, ops)
        writer.close()
        assert wait_caught_up(ledger, view, timeout=60)
        balances = assert_consistent(ledger, view, list(keys))
        assert any(balance < 0 for account, balance in balances.items() if account.startswith("tenant:"))
        usage = view.usage_rows("t0", date(2000, 1, 1), date(2100, 1, 1))
        charged = -sum((e["amount"] for e in view.entries("t0", "usage")), ZERO)
        assert sum((row["cost"] for row in usage), ZERO) == charged
    finally:
        worker.stop()


def test_killing_the_projection_process_mid_stream_loses_and_repeats_nothing(store):
    ledger, view, url, data_dir = store
    rng = random.Random(7)
    keys = setup_tenants(ledger, ["acme", "beta"])
    ledger.add_credits("acme", Decimal("1000"), "INV-1")
    writer = LedgerWriter(ledger)
    for _ in range(8):
        apply(ledger, writer, keys, [("request", rng.randrange(2), rng.randrange(2), rng.randrange(9),
                                      rng.randrange(10**5), rng.randrange(10**4), rng.randrange(10**4),
                                      "provider", False) for _ in range(1000)])
    env = {**os.environ, "TWOAPI_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    if url:
        env["DATABASE_URL"] = url

    shown = json.loads(subprocess.run([TWOAPI, "projections", "status"], env=env, capture_output=True, text=True,
                                      timeout=60, check=True).stdout.splitlines()[0])  # then the analytics line
    assert shown["position"] == 0 and shown["pending_events"] > 0 and shown["head"] > 0

    kills, last = 0, view.position() or 0
    deadline = time.monotonic() + 120
    while not wait_caught_up(ledger, view, timeout=0.01):
        assert time.monotonic() < deadline, "the projection never caught up"
        process = subprocess.Popen([TWOAPI, "projections", "run"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            while (view.position() or 0) == last and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.2))
            if not wait_caught_up(ledger, view, timeout=0):
                process.send_signal(signal.SIGKILL)  # mid-stream: more events are waiting
                kills += 1
                # the ledger keeps moving while the projection is dead
                apply(ledger, writer, keys, [("request", 0, 0, 1, 1000, 100, 10, "provider", False)] * 20)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(10)
        last = view.position() or 0
    writer.close()
    assert kills >= 2
    assert_consistent(ledger, view, ["acme", "beta"])
    report = status(ledger, view)
    assert report.pending == 0 and report.position == view.position()


class NoLease(Lease):
    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def test_two_projections_racing_without_the_lease_still_apply_each_event_once(store):
    ledger, view, url, data_dir = store
    rng = random.Random(11)
    keys = setup_tenants(ledger, ["acme", "beta", "gamma"])
    workers = [ProjectionWorker(url, data_dir, retry_s=0.01) for _ in range(2)]
    for worker in workers:
        worker.lease = NoLease()
        worker.start()
    writer = LedgerWriter(ledger)
    try:
        for _ in range(6):
            ops: list[tuple] = [("credit", rng.randrange(3), "7.000000001")]
            ops += [("request", rng.randrange(3), rng.randrange(2), rng.randrange(9), rng.randrange(10**5),
                     rng.randrange(10**4), rng.randrange(10**4), "provider", False) for _ in range(300)]
            apply(ledger, writer, keys, ops)
        writer.close()
        assert wait_caught_up(ledger, view, timeout=60)
        time.sleep(0.3)  # let the loser of any last race give up
        assert_consistent(ledger, view, list(keys))
    finally:
        for worker in workers:
            worker.stop()


def test_a_rebuild_from_the_first_event_gives_the_same_balances(store):
    ledger, view, url, data_dir = store
    keys = setup_tenants(ledger, ["acme", "beta"])
    writer = LedgerWriter(ledger)
    apply(ledger, writer, keys, [("credit", 0, "12.5"), ("adjust", 1, "-3.000000007")]
          + [("request", i % 2, i % 2, i, 1000 * i, 300 * i, 100 * i, "provider", i % 7 == 0) for i in range(200)])
    writer.close()
    assert catch_up(url, data_dir, ledger, view)
    before = assert_consistent(ledger, view, ["acme", "beta"])
    keys_before = view.keys("acme")
    rebuild(url, data_dir)
    assert view.balances() == {} and view.position() is None
    assert catch_up(url, data_dir, ledger, view)
    assert assert_consistent(ledger, view, ["acme", "beta"]) == before
    assert view.keys("acme") == keys_before
