"""The rollups answer what the raw rows answer: for windows whose edges fall inside a
day (whole days from usage_daily, edge hours from usage_hourly), for every split, and
for the latency and rate rollups; and the budget's burn-down adds up."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from analytics import queries
from analytics.config import AnalyticsConfig
from analytics.rows import REQUEST_COLUMNS
from analytics.store import AnalyticsStore, migrate

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnalyticsStore]:
    """Requests over the last 5 days, hour by hour, inserted as the projection would
    (one block per day, each with its dedup token), so the views fill the rollups."""
    opened = AnalyticsStore.open(AnalyticsConfig(data_dir=tmp_path_factory.mktemp("queries")))
    migrate(opened)
    rng = random.Random(5)
    models = (("openai", "openai/gpt-4o-mini"), ("anthropic", "anthropic/claude-3-5-haiku"),
              ("google", "google/gemini-1.5-flash"))
    for day in range(5):
        block = []
        for i in range(600):
            at = NOW - timedelta(days=day, minutes=rng.randint(0, 24 * 60 - 1), seconds=rng.randint(0, 59))
            provider, model = models[i % 3]
            first_provider = models[(i + 1) % 3][0] if i % 17 == 0 else provider
            failed = i % 13 == 0
            stream = i % 3 == 0
            ttft = rng.uniform(50, 400) if stream else None
            latency = rng.uniform(100, 3000)
            cost = Decimal(rng.randint(1, 5_000_000)) / Decimal(1_000_000_000)
            row = {
                "request_id": f"req_{day:02d}{i:06d}", "time": at, "tenant": ("acme", "globex")[i % 2],
                "key_id": f"k{i % 4}", "endpoint": "chat.completions", "requested_model": model,
                "provider": provider, "model": model, "first_provider": first_provider, "first_model": model,
                "strategy": "explicit", "status": 502 if failed else 200,
                "error_code": "all_candidates_failed" if failed else "", "attempts": 2 if i % 17 == 0 else 1,
                "retries": 1 if i % 11 == 0 else 0, "fallback_used": int(i % 17 == 0), "stream": int(stream),
                "ttft_ms": ttft, "latency_ms": latency, "generation_ms": 0.0 if failed else latency - (ttft or 0),
                "input_tokens": rng.randint(10, 900), "output_tokens": 0 if failed else rng.randint(1, 500),
                "cached_tokens": 0, "usage_source": "" if failed else "provider",
                "cost": Decimal(0) if failed else cost, "price_book": "t", "notification_id": day * 1000 + i,
            }
            block.append(tuple(row[c] for c in REQUEST_COLUMNS))
        opened.insert("requests", REQUEST_COLUMNS, block, token=f"test:{day}")
    yield opened
    opened.close()


EVERYONE = queries.Scope()


def both(store: AnalyticsStore, name: str, params: dict[str, str], scope: queries.Scope = EVERYONE):
    rollup = queries.run(store, name, {**params, "source": "rollup"}, scope)
    raw = queries.run(store, name, {**params, "source": "raw"}, scope)
    assert (rollup["source"], raw["source"]) == ("rollup", "raw")
    return rollup["data"], raw["data"]


# Windows with edges on the hour but inside a day, so both rollups are read.
WINDOWS = [
    {"since": (NOW - timedelta(days=3, hours=5)).isoformat(), "until": (NOW - timedelta(hours=7)).isoformat()},
    {"since": (NOW - timedelta(days=4, hours=23)).isoformat(), "until": (NOW + timedelta(hours=1)).isoformat()},
    {"since": (NOW - timedelta(hours=30)).isoformat(), "until": (NOW - timedelta(hours=2)).isoformat()},
]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("by", ["tenant", "key", "model", "provider"])
def test_breakdowns_from_the_rollups_equal_the_raw_rows(store, window, by):
    rollup, raw = both(store, "breakdown", {**window, "by": by, "limit": "1000"})
    key = lambda rows: sorted((r["group"], r["requests"], r["errors"], r["output_tokens"], r["cost"]) for r in rows)  # noqa: E731
    assert key(rollup) == key(raw) and raw


@pytest.mark.parametrize("window", WINDOWS)
def test_day_buckets_from_the_rollups_equal_the_raw_rows(store, window):
    rollup, raw = both(store, "usage", {**window, "bucket": "day", "by": "model"})
    key = lambda rows: sorted((str(r["bucket"]), r["group"], r["requests"], r["cost"]) for r in rows)  # noqa: E731
    assert key(rollup) == key(raw) and raw


def test_a_tenants_view_of_the_rollups_is_its_own(store):
    scoped = queries.Scope("globex")
    rollup, raw = both(store, "breakdown", {**WINDOWS[1], "by": "model"}, scoped)
    assert sorted((r["group"], r["cost"]) for r in rollup) == sorted((r["group"], r["cost"]) for r in raw)
    everyone = queries.run(store, "breakdown", {**WINDOWS[1], "by": "tenant", "source": "rollup"}, queries.Scope())
    mine = {r["group"]: r["cost"] for r in everyone["data"]}["globex"]
    assert sum(r["cost"] for r in rollup) == mine
    # The provider rollups have no tenant column: a tenant's latency comes from its rows.
    assert queries.run(store, "latency", {"since": "7d", "source": "rollup"}, scoped)["source"] == "raw"


def test_rates_and_throughput_from_the_rollups_equal_the_raw_rows(store):
    window = {"since": (NOW - timedelta(days=4)).isoformat(), "until": (NOW + timedelta(hours=1)).isoformat()}
    rollup, raw = both(store, "provider_health", window)
    key = lambda rows: sorted((r["provider"], r["requests"], r["error_rate"], r["retry_rate"], r["fallback_rate"])  # noqa: E731
                              for r in rows)
    assert key(rollup) == key(raw)
    rollup, raw = both(store, "throughput", {**window, "bucket": "hour"})
    assert sorted((str(r["bucket"]), r["group"], r["tokens"]) for r in rollup) == \
        sorted((str(r["bucket"]), r["group"], r["tokens"]) for r in raw)
    rollup, raw = both(store, "latency", window)
    for a, b in zip(sorted(rollup, key=lambda r: r["model"]), sorted(raw, key=lambda r: r["model"]), strict=True):
        assert a["requests"] == b["requests"]
        assert a["p50_ms"] == pytest.approx(b["p50_ms"], rel=0.05)  # t-digest states merged vs one digest


@pytest.mark.parametrize("window", WINDOWS)
def test_latency_percentiles_from_the_daily_and_hourly_rollups_match_the_raw_rows(store, window):
    rollup, raw = both(store, "latency", window)
    assert len(rollup) == len(raw) == 3
    for a, b in zip(sorted(rollup, key=lambda r: r["model"]), sorted(raw, key=lambda r: r["model"]), strict=True):
        assert (a["provider"], a["model"], a["requests"]) == (b["provider"], b["model"], b["requests"])
        for name in ("p50_ms", "p95_ms", "ttft_p50_ms"):  # t-digest states merged vs one digest
            if b[name] is None:  # no streams of this model in the fixture: no TTFT either way
                assert a[name] is None, name
            else:
                assert a[name] == pytest.approx(b[name], rel=0.05), name
    assert any(r["ttft_p50_ms"] is not None for r in rollup)


def test_the_burn_down_ends_at_todays_balance_and_steps_by_each_buckets_spend(store):
    store.insert("ledger_events", ("notification_id", "originator_id", "version", "time", "aggregate", "event",
                                   "tenant", "amount", "data"),
                 [(9_000_001, "00000000-0000-0000-0000-000000000001", 2, NOW - timedelta(days=6), "Tenant",
                   "CreditsAdded", "acme", Decimal("100"), "{}")], token="test:credits")
    answer = queries.run(store, "budget", {"since": "3d", "bucket": "day"}, queries.Scope("acme"))
    summary, rows = answer["summary"], answer["data"]
    assert summary["credits"] == Decimal(100) and summary["balance"] == Decimal(100) - summary["spend"]
    assert rows[-1]["balance"] == summary["balance"]
    for before, after in itertools.pairwise(rows):
        assert before["balance"] - after["spend"] == after["balance"]
    total = queries.run(store, "totals", {"since": "30d"}, queries.Scope("acme"))["data"][0]["cost"]
    assert summary["spend"] == total  # the rollup's sum is the raw rows' sum, exactly
