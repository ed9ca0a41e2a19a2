"""Analytics follow re-pricing: after a `RepricingRun` with `UsageRepriced` events,
every cost figure (raw rows, hourly and daily rollups, by tenant, key, model,
provider and time bucket, the budget and its burn-down, the reconciliation) equals
the original cost plus the corrections, each in the time bucket of the request whose
usage it corrects; to the nano-dollar, also after a crash mid-batch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from analytics import queries
from analytics import rows as R
from analytics.projection import AnalyticsProjection
from analytics.reconcile import ledger_totals
from analytics.store import AnalyticsStore
from ledger.accounts import replay_balances
from ledger.application import Ledger
from ledger.ids import format_request_id
from tests.analytics.repricing import Usage, costs_by, hour, record_run, usage_events
from tests.analytics.synthetic import seed_ledger, write_requests
from tests.analytics.test_totals import send_requests

TENANTS = ("acme", "globex", "initech")
WIDE = {"since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"}


def up_and_down(i: int, usage: Usage) -> Decimal:
    """Some usage dearer, some cheaper, some free, some unchanged (left out of the run)."""
    return (usage.cost * Decimal("1.37"), usage.cost / 3, Decimal(0), usage.cost, usage.cost + Decimal("0.25"))[i % 5]


def nonzero(sums: dict) -> dict:
    """Groups with money (a group of failed requests only, or re-priced to zero, has none)."""
    return {key: value for key, value in sums.items() if value}


def _naive(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


# -- rows: where a correction sits ----------------------------------------------------------------


def _event(n: int, aggregate: str, name: str, when: datetime, originator=None, version: int = 1, **fields):
    return R.LedgerEvent(n, originator or uuid4(), version, aggregate, name, when, fields)


def test_a_correction_sits_in_its_request_rows_bucket_and_dimensions():
    late = datetime(2026, 3, 1, 23, 59, 59, 900000, tzinfo=UTC)  # received before midnight, metered after
    here, earlier, unknown = uuid4(), uuid4(), uuid4()
    batch = [
        _event(1, "Request", "Received", late, here, tenant="acme", key_id="k1", endpoint="chat", model="auto"),
        _event(2, "Request", "AttemptStarted", late, here, 2, attempt=1, provider="anthropic",
               model="anthropic/claude-3-5-haiku"),
        _event(3, "Request", "UsageMetered", late + timedelta(seconds=2), here, 3, provider="anthropic",
               model="anthropic/claude-3-5-haiku", input_tokens=1, output_tokens=2, cached_tokens=0,
               source="provider", price_book="v1", cost="0.000001000"),
        _event(4, "Request", "Completed", late + timedelta(seconds=2), here, 4, status=200, latency_ms=2100.0),
        _event(5, "RepricingRun", "UsageRepriced", datetime.now(UTC), version=2, run_id="r1", tenant="acme",
               key_id="k1", model="anthropic/claude-3-5-haiku", day="2026-03-02", price_book="v2",
               corrections=[[f"{here}/3", "0.000001000", "0.000004000"],
                            [f"{earlier}/5", "0.500000000", "0.250000000"],
                            [f"{unknown}/5", "0.100000000", "0.100000001"]],
               old_cost="0.600000000", new_cost="0.350000001"),
    ]
    asked = []
    before = R.RequestKey(datetime(2026, 3, 1, 7, 5, tzinfo=UTC), "acme", "k1", "openai", "openai/gpt-4o")

    def request_of(ids, hints):
        asked.append((set(ids), list(hints)))
        return {format_request_id(earlier): before} if format_request_id(earlier) in ids else {}

    rows = R.build_rows(batch, lambda _: None, request_of)
    assert asked == [({format_request_id(earlier), format_request_id(unknown)},
                      [("acme", datetime(2026, 3, 2, tzinfo=UTC))])]  # not the one shipped in this batch
    by_request = {row[R.CORRECTION_COLUMNS.index("request_id")]: dict(zip(R.CORRECTION_COLUMNS, row, strict=True))
                  for row in rows.corrections}
    same_batch = by_request[format_request_id(here)]
    assert same_batch["time"] == late  # the request's bucket (the day before the usage's), not the run's
    assert (same_batch["provider"], same_batch["model"]) == ("anthropic", "anthropic/claude-3-5-haiku")
    assert same_batch["delta"] == Decimal("0.000003000") and same_batch["usage_event"] == f"{here}/3"
    shipped_before = by_request[format_request_id(earlier)]
    assert (shipped_before["time"], shipped_before["provider"], shipped_before["model"]) == (
        before.time, "openai", "openai/gpt-4o")
    assert shipped_before["delta"] == Decimal("-0.25")
    nowhere = by_request[format_request_id(unknown)]  # only the day is known: its start, the event's dimensions
    assert (nowhere["time"], nowhere["provider"], nowhere["model"]) == (
        datetime(2026, 3, 2, tzinfo=UTC), "", "anthropic/claude-3-5-haiku")
    assert rows.unplaced == 1
    line = dict(zip(R.EVENT_COLUMNS, rows.events[-1], strict=True))
    assert (line["event"], line["tenant"], line["key_id"], line["amount"]) == (
        "UsageRepriced", "acme", "k1", Decimal("-0.249999999"))


# -- the projection, with crashes -----------------------------------------------------------------


class Crash(Exception):
    pass


class CrashingProjection(AnalyticsProjection):
    """Dies once, in the first batch that carries corrections, at `point`."""

    def __init__(self, *args, point: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.point = point
        self.crashed = False

    def _insert(self, rows, token):
        if self.crashed or not rows.corrections or self.point == "before_position":
            return super()._insert(rows, token)
        self.crashed = True
        self.store.insert("ledger_events", R.EVENT_COLUMNS, rows.events, token + ":ledger_events")
        if self.point == "before_corrections":
            self.store.insert("attempts", R.ATTEMPT_COLUMNS, rows.attempts, token + ":attempts")
            self.store.insert("requests", R.REQUEST_COLUMNS, rows.requests, token + ":requests")
        raise Crash(self.point)

    def _save_state(self, position):
        if self.point == "before_position" and not self.crashed and self.store.scalar(
                "SELECT count() FROM ledger_events WHERE event = 'UsageRepriced'"):
            self.crashed = True
            raise Crash(self.point)
        super()._save_state(position)


def assert_follows(store: AnalyticsStore, ledger: Ledger, usages: list[Usage], requests: dict[str, int]) -> None:
    """Every cost figure of the store equals `usages` (costs as re-priced), exactly;
    request counts (`requests`, by tenant) are what they were."""
    by_tenant = costs_by(usages, lambda u: u.tenant)
    # Raw rows: requests plus corrections, without FINAL (a duplicate would show) and with it.
    for final in ("", " FINAL"):
        got = dict(store.query(
            f"SELECT tenant, sum(cost) FROM (SELECT tenant, cost FROM requests{final}"
            f" UNION ALL SELECT tenant, delta FROM cost_corrections{final}) GROUP BY tenant")[1])
        assert got == by_tenant, final
    # The rollups, to the hour (day) and every dimension.
    hourly = {(t, _naive(h), k, p, m): c for t, h, k, p, m, c in store.query(
        "SELECT tenant, hour, key_id, provider, model, sum(cost) FROM usage_hourly"
        " GROUP BY tenant, hour, key_id, provider, model")[1]}
    assert nonzero(hourly) == nonzero(costs_by(
        usages, lambda u: (u.tenant, hour(u.received), u.key_id, u.provider, u.model)))
    daily = {(t, d, k, p, m): c for t, d, k, p, m, c in store.query(
        "SELECT tenant, day, key_id, provider, model, sum(cost) FROM usage_daily"
        " GROUP BY tenant, day, key_id, provider, model")[1]}
    assert nonzero(daily) == nonzero(costs_by(
        usages, lambda u: (u.tenant, u.received.date(), u.key_id, u.provider, u.model)))
    assert store.scalar("SELECT count() FROM cost_corrections WHERE provider = ''") == 0  # every one placed
    # The queries, from the raw rows and from the rollups.
    for source in ("raw", "rollup"):
        for by, key in (("tenant", lambda u: u.tenant), ("key", lambda u: u.key_id), ("model", lambda u: u.model),
                        ("provider", lambda u: u.provider)):
            answer = queries.run(store, "breakdown", {**WIDE, "by": by, "source": source}, queries.Scope())
            assert answer["source"] == source
            got = {row["group"]: row["cost"] for row in answer["data"]}
            assert nonzero(got) == nonzero(costs_by(usages, key)), (source, by)
        usage = queries.run(store, "usage", {"since": "2h", "bucket": "hour", "by": "model", "source": source},
                            queries.Scope())
        got = {(_naive(row["bucket"]), row["group"]): row["cost"] for row in usage["data"]}
        assert nonzero(got) == nonzero(costs_by(usages, lambda u: (hour(u.received), u.model))), source
    balances = replay_balances(ledger)
    listed = {row["tenant"]: row for row in queries.run(store, "tenants", {}, queries.Scope())["data"]}
    for tenant in TENANTS:
        assert (listed[tenant]["spend"], listed[tenant]["balance"]) == (by_tenant[tenant], balances[f"tenant:{tenant}"])
        totals = queries.run(store, "totals", WIDE, queries.Scope(tenant))["data"][0]
        assert (totals["cost"], totals["requests"]) == (by_tenant[tenant], requests[tenant])
        budget = queries.run(store, "budget", {"since": "2h"}, queries.Scope(tenant))
        summary = budget["summary"]
        assert summary["spend"] == by_tenant[tenant]
        assert summary["balance"] == balances[f"tenant:{tenant}"]  # the ledger's balance
        assert summary["credits"] + summary["adjustments"] - summary["spend"] == summary["balance"]
        assert sum(row["spend"] for row in budget["data"]) == by_tenant[tenant]  # the burn-down
        assert budget["data"][-1]["balance"] == summary["balance"]
        ledger_side = ledger_totals(ledger, tenant)
        assert ledger_side.cost == by_tenant[tenant] and ledger_side.balance == balances[f"tenant:{tenant}"]


@pytest.mark.parametrize("point", ["after_ledger_events", "before_corrections", "before_position"])
def test_a_crash_mid_batch_with_corrections_then_a_restart_counts_each_correction_once(ledger, store, point):
    keys = seed_ledger(ledger, TENANTS)
    expected = write_requests(ledger, keys, 150)
    first = record_run(ledger, "run-1", usage_events(ledger), up_and_down)
    write_requests(ledger, keys, 60, seed=8, expected=expected)
    # A second run re-prices everything again: corrections of corrections, and usage of both rounds.
    usages = usage_events(ledger)
    current = {u.event_id: u.cost for u in first}
    usages = [Usage(u.event_id, u.request, u.tenant, u.key_id, u.provider, u.model, u.received, u.metered,
                    current.get(u.event_id, u.cost)) for u in usages]
    final = record_run(ledger, "run-2", usages, lambda i, u: up_and_down(i + 2, u))
    crashing = CrashingProjection(ledger, store, batch_size=300, point=point)
    with pytest.raises(Crash):
        crashing.catch_up()
    restarted = AnalyticsProjection(ledger, store, batch_size=300)
    assert restarted.position().pending
    restarted.catch_up()
    assert restarted.position().position == ledger.recorder.max_notification_id()
    assert store.scalar("SELECT count() FROM cost_corrections") == store.scalar(
        "SELECT count() FROM cost_corrections FINAL") > 0
    assert_follows(store, ledger, final, expected.requests)


def test_corrections_in_the_batch_of_their_requests_and_after_the_rows_were_shipped(ledger, store):
    keys = seed_ledger(ledger, TENANTS)
    expected = write_requests(ledger, keys, 90)
    projection = AnalyticsProjection(ledger, store, batch_size=100_000)  # one batch: rows found in the batch
    repriced = record_run(ledger, "run-1", usage_events(ledger), up_and_down)
    projection.catch_up()
    assert_follows(store, ledger, repriced, expected.requests)
    again = record_run(ledger, "run-2", repriced, lambda i, u: up_and_down(i + 1, u))  # rows read from the store
    projection.catch_up()
    assert_follows(store, ledger, again, expected.requests)
    assert store.scalar("SELECT countIf(provider = '') FROM cost_corrections") == 0


# -- through a gateway ------------------------------------------------------------------------------


def test_analytics_follow_a_repricing_run_of_gateway_usage(analytics_gateway, simulator):
    gw = analytics_gateway
    assert len(send_requests(gw.url, gw.keys, simulator.url, 30)) == 30
    gw.wait_caught_up()
    settings = gw.gateway.settings
    ledger = Ledger.open(settings.database_url, settings.data_dir)
    try:
        usages = usage_events(ledger)
        original = costs_by(usages, lambda u: u.tenant)
        repriced = record_run(ledger, "run-gw", usages, up_and_down)
        balances = replay_balances(ledger)
    finally:
        ledger.close()
    gw.wait_caught_up()
    want = costs_by(repriced, lambda u: u.tenant)
    assert want != original

    totals = {row["tenant"]: row for row in gw.admin("totals", **WIDE).json()["data"]}
    for tenant, cost in want.items():
        assert Decimal(totals[tenant]["cost"]) == cost, tenant
    for source in ("raw", "rollup"):
        for by, key in (("tenant", lambda u: u.tenant), ("key", lambda u: u.key_id), ("model", lambda u: u.model),
                        ("provider", lambda u: u.provider)):
            answer = gw.admin("breakdown", by=by, source=source, **WIDE).json()
            assert answer["source"] == source
            got = {row["group"]: Decimal(row["cost"]) for row in answer["data"]}
            assert nonzero(got) == nonzero(costs_by(repriced, key)), (source, by)
        for bucket, key in (("hour", lambda u: hour(u.received)), ("day", lambda u: u.received.date())):
            answer = gw.admin("usage", by="key", bucket=bucket, source=source, **WIDE).json()
            got = {(row["bucket"][:10] if bucket == "day" else row["bucket"][:13], row["group"]): Decimal(row["cost"])
                   for row in answer["data"]}
            expected = {(str(k[0])[:10] if bucket == "day" else k[0].isoformat()[:13], k[1]): v
                        for k, v in costs_by(repriced, lambda u, key=key: (key(u), u.key_id)).items()}
            assert nonzero(got) == nonzero(expected), (source, bucket)

    for tenant, keys in gw.keys.items():
        mine = gw.tenant(keys[0], "totals", **WIDE).json()["data"]
        assert Decimal(mine[0]["cost"]) == want[tenant]
        budget = gw.tenant(keys[1], "budget").json()
        summary = budget["summary"]
        assert Decimal(summary["spend"]) == want[tenant]
        assert Decimal(summary["balance"]) == balances[f"tenant:{tenant}"]
        assert Decimal(summary["repriced"]) == want[tenant] - original[tenant]
        assert Decimal(summary["repricing_adjustments"]) == original[tenant] - want[tenant]
        assert Decimal(summary["credits"]) + Decimal(summary["adjustments"]) - Decimal(summary["spend"]) \
            == Decimal(summary["balance"])
        assert sum(Decimal(row["spend"]) for row in budget["data"]) == want[tenant]
        assert Decimal(budget["data"][-1]["balance"]) == Decimal(summary["balance"])
        report = gw.admin("reconciliation", tenant=tenant).json()
        assert report["match"], report
        assert Decimal(report["lines"]["cost"]["ledger"]) == want[tenant]
        lines = gw.admin("ledger", tenant=tenant, event="UsageRepriced", **WIDE).json()["data"]
        assert sum(Decimal(line["amount"]) for line in lines) == want[tenant] - original[tenant]


def test_analytics_follow_the_repricing_engine(sqlite_analytics_gateway, simulator):
    """The same, with runs planned and applied by the engine itself (ledger/repricing.py)."""
    from gateway.price_list import base_price_book
    from ledger.pricing import PriceBook
    from ledger.repricing import apply, current_costs, plan

    gw = sqlite_analytics_gateway
    assert len(send_requests(gw.url, gw.keys, simulator.url, 24)) == 24
    gw.wait_caught_up()
    base = base_price_book()
    dearer = PriceBook.from_table({model: {"input": p.input * 3, "output": p.output * 2, "cached_input": p.cached_input,
                                           "image": p.image} for model, p in base.prices.items()})
    ledger = Ledger.open(None, gw.gateway.settings.data_dir)
    try:
        now = datetime.now(UTC)
        for book in (dearer, base):  # up, then back down: corrections of corrections
            report = plan(ledger, book, now - timedelta(hours=2), now + timedelta(hours=1))
            assert report.changed > 0
            assert not apply(ledger, report).already
            assert apply(ledger, report).already  # applying a run again changes nothing
            if book is dearer:
                gw.wait_caught_up()
                corrected = current_costs(ledger)
                usages = [Usage(u.event_id, u.request, u.tenant, u.key_id, u.provider, u.model, u.received,
                                u.metered, Decimal(corrected.get(u.event_id, u.cost))) for u in usage_events(ledger)]
                want = costs_by(usages, lambda u: u.tenant)
                got = {row["tenant"]: Decimal(row["cost"]) for row in gw.admin("totals", **WIDE).json()["data"]}
                assert nonzero(got) == nonzero(want) and want != costs_by(usage_events(ledger), lambda u: u.tenant)
        gw.wait_caught_up()
        original = usage_events(ledger)  # as metered: what the second run priced back to
        balances = replay_balances(ledger)
    finally:
        ledger.close()
    for source in ("raw", "rollup"):
        answer = gw.admin("breakdown", by="model", source=source, **WIDE).json()["data"]
        got = {row["group"]: Decimal(row["cost"]) for row in answer}
        assert nonzero(got) == nonzero(costs_by(original, lambda u: u.model)), source
    for tenant in gw.keys:
        summary = gw.admin("budget", tenant=tenant).json()["summary"]
        assert Decimal(summary["spend"]) == costs_by(original, lambda u: u.tenant).get(tenant, Decimal(0))
        assert Decimal(summary["balance"]) == balances[f"tenant:{tenant}"]
        assert Decimal(summary["repriced"]) == 0  # up and back down
        assert gw.admin("reconciliation", tenant=tenant).json()["match"]
