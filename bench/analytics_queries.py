"""Bench 4: the dashboards' queries over 10 million request rows on chDB.

    python -m bench.analytics_queries [--rows 10000000] [--runs 5] [--keep DIR]

Builds an analytics store with the real migrations (tables, rollups, materialized
views), fills it with synthetic requests spread over 30 days (50 tenants with a
skewed share of traffic, 5 keys each, 12 models of 3 providers, streams, errors,
retries, fallbacks), one attempt row per request (two when retried), and the
tenants' own ledger lines; then times each query the dashboards send, through
`analytics.queries.run` exactly as the API runs it. The rows are generated inside
the engine (INSERT ... SELECT FROM numbers()), so the materialized views fill the
rollups as they would from the projection. Writes bench/results/analytics-<time>.json
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from analytics import queries
from analytics.config import AnalyticsConfig
from analytics.store import AnalyticsStore, migrate

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 1_000_000
TENANTS = 50
KEYS_PER_TENANT = 5
DAYS = 30
# model, provider, USD per million input tokens, per million output tokens
MODELS = (
    ("openai/gpt-4o-mini", "openai", "0.15", "0.60"), ("openai/gpt-4o", "openai", "2.50", "10.00"),
    ("openai/o3-mini", "openai", "1.10", "4.40"), ("openai/gpt-4.1", "openai", "2.00", "8.00"),
    ("anthropic/claude-3-5-haiku", "anthropic", "0.80", "4.00"),
    ("anthropic/claude-3-5-sonnet", "anthropic", "3.00", "15.00"),
    ("anthropic/claude-sonnet-4", "anthropic", "3.00", "15.00"),
    ("anthropic/claude-3-opus", "anthropic", "15.00", "75.00"),
    ("google/gemini-1.5-flash", "google", "0.075", "0.30"), ("google/gemini-1.5-pro", "google", "1.25", "5.00"),
    ("google/gemini-2.0-flash", "google", "0.10", "0.40"), ("google/gemini-2.5-flash", "google", "0.30", "2.50"),
)

# The queries the dashboards send (page: what), with the parameters they send.
QUERIES: tuple[tuple[str, str, dict[str, str], str | None], ...] = (
    ("tenant: spend over 30 days by model (day buckets)", "usage", {"since": "30d", "by": "model"}, "tenant-0"),
    ("tenant: spend over 24 hours by model (hour buckets)", "usage", {"since": "24h", "by": "model"}, "tenant-0"),
    ("tenant: last hour by model (minute buckets, raw rows)", "usage", {"since": "1h", "by": "model"}, "tenant-0"),
    ("tenant: spend by key, 30 days", "breakdown", {"since": "30d", "by": "key"}, "tenant-0"),
    ("tenant: balance and burn-down, 30 days", "budget", {"since": "30d"}, "tenant-0"),
    ("admin: top spenders, 30 days", "top_spenders", {"since": "30d"}, None),
    ("admin: spend over 30 days by tenant", "usage", {"since": "30d", "by": "tenant"}, None),
    ("providers: latency p50/p95/p99 by model, 30 days", "latency", {"since": "30d"}, None),
    ("providers: latency percentiles over 7 days (hour buckets)", "latency_over_time", {"since": "7d"}, None),
    ("providers: error/retry/fallback rates, 30 days", "provider_health", {"since": "30d"}, None),
    ("providers: rates over 7 days (hour buckets)", "provider_health", {"since": "7d", "bucket": "hour"}, None),
    ("providers: tokens per second, 7 days", "throughput", {"since": "7d"}, None),
    ("finance: exact totals per tenant, all rows (FINAL)", "totals", {"since": "31d"}, None),
    ("finance: exact totals of one tenant (FINAL)", "totals", {"since": "31d"}, "tenant-0"),
    ("same, raw rows: spend over 30 days by model", "usage", {"since": "30d", "by": "model", "source": "raw"}, None),
    ("same, raw rows: latency by model, 30 days", "latency", {"since": "30d", "source": "raw"}, None),
)


def generate(store: AnalyticsStore, rows: int) -> dict[str, float]:
    """Fill the tables; seconds per table."""
    models = "[" + ", ".join(f"'{m}'" for m, *_ in MODELS) + "]"
    providers = "[" + ", ".join(f"'{p}'" for _, p, *_ in MODELS) + "]"
    price_in = "[" + ", ".join(f"toDecimal128('{i}', 9)" for *_, i, _ in MODELS) + "]"
    price_out = "[" + ", ".join(f"toDecimal128('{o}', 9)" for *_, o in MODELS) + "]"
    timings = {}
    started = time.perf_counter()
    for offset in range(0, rows, CHUNK):
        count = min(CHUNK, rows - offset)
        # h1..h4: independent hashes of the row number; the shape of the traffic.
        store.command(f"""
            INSERT INTO requests
            SELECT request_id, time, tenant, key_id, 'chat.completions', model, provider, model,
                   if(fallback = 1, first_provider_, provider), if(fallback = 1, first_model_, model),
                   if(h4 % 10 = 0, 'cost', 'explicit'), status, if(status >= 400, 'all_candidates_failed', ''),
                   1 + retried + fallback, retried, fallback, stream, ttft, latency,
                   if(status < 400, latency - coalesce(ttft, latency * 0.1), 0),
                   input, output, cached, if(status < 400, 'provider', ''),
                   if(status < 400, CAST((toDecimal128(input - cached, 9) * arrayElement({price_in}, m)
                       + toDecimal128(output, 9) * arrayElement({price_out}, m)) / 1000000 AS Decimal(18, 9)),
                      toDecimal64(0, 9)),
                   'bench', n + 1
            FROM (
                SELECT number + {offset} AS n, sipHash64(n, 1) AS h1, sipHash64(n, 2) AS h2, sipHash64(n, 3) AS h3,
                       sipHash64(n, 4) AS h4,
                       concat('req_', lower(hex(h1))) AS request_id,
                       now64(3, 'UTC') - toIntervalMillisecond(intDiv(n * {DAYS * 86_400_000}, {rows})
                                                               + h2 % 60000) AS time,
                       toUInt32(floor({TENANTS} * pow((h1 % 100000) / 100000, 2.5))) AS t,
                       concat('tenant-', toString(t)) AS tenant,
                       concat('key-', toString(t), '-', toString(h2 % {KEYS_PER_TENANT})) AS key_id,
                       toUInt32(1 + h3 % {len(MODELS)}) AS m,
                       arrayElement({models}, m) AS model, arrayElement({providers}, m) AS provider,
                       toUInt8(h4 % 100 < 2) AS fallback, toUInt8(h4 % 100 < 5) AS retried,
                       arrayElement({models}, 1 + (m + 3) % {len(MODELS)}) AS first_model_,
                       arrayElement({providers}, 1 + (m + 3) % {len(MODELS)}) AS first_provider_,
                       if(h2 % 100 < 3, toUInt16(502), toUInt16(200)) AS status,
                       toUInt8(h3 % 10 < 4) AS stream,
                       if(stream = 1, toNullable(80 + (h4 % 700) * 1.0), NULL) AS ttft,
                       150 + (h1 % 4000) * 1.0 + (h2 % 7) * 300.0 AS latency,
                       toUInt64(if(status < 400, 20 + h2 % 3000, 0)) AS input,
                       toUInt64(if(status < 400, 5 + h3 % 900, 0)) AS output,
                       toUInt64(if(status < 400 AND h4 % 5 = 0, intDiv(input, 2), 0)) AS cached
                FROM numbers({count})
            )""")
    timings["requests"] = time.perf_counter() - started
    started = time.perf_counter()
    store.command("""
        INSERT INTO attempts
        SELECT request_id, 1, time, tenant, key_id, first_provider, first_model,
               if(fallback_used = 1 OR retries > 0 OR status >= 400, 'error', 'ok'),
               if(fallback_used = 1 OR retries > 0 OR status >= 400, 503, 200),
               if(fallback_used = 1 OR retries > 0 OR status >= 400, 'upstream_error', ''),
               toUInt8(fallback_used = 1 OR retries > 0), ttft_ms, latency_ms, notification_id
        FROM requests""")
    store.command("""
        INSERT INTO attempts
        SELECT request_id, 2, time, tenant, key_id, provider, model, if(status >= 400, 'error', 'ok'),
               if(status >= 400, 502, 200), if(status >= 400, 'upstream_error', ''), 0, ttft_ms, latency_ms,
               notification_id
        FROM requests WHERE retries > 0 OR fallback_used = 1""")
    timings["attempts"] = time.perf_counter() - started
    started = time.perf_counter()
    store.command(f"""
        INSERT INTO ledger_events
        SELECT n, generateUUIDv4(), 1 + (n % 2), now64(6, 'UTC') - toIntervalDay({DAYS + 1}), 'Tenant',
               if(n % 2 = 0, 'Created', 'CreditsAdded'), concat('tenant-', toString(intDiv(n, 2))), '', '', '', '',
               if(n % 2 = 0, toDecimal64(0, 9), toDecimal64(1000, 9)), 0, 0, 0, '{{}}'
        FROM (SELECT number AS n FROM numbers({TENANTS * 2}))""")
    store.command(f"""
        INSERT INTO ledger_events
        SELECT 100000 + n, generateUUIDv4(), 1, now64(6, 'UTC') - toIntervalDay({DAYS + 1}), 'ApiKey', 'Issued',
               concat('tenant-', toString(intDiv(n, {KEYS_PER_TENANT}))),
               concat('key-', toString(intDiv(n, {KEYS_PER_TENANT})), '-', toString(n % {KEYS_PER_TENANT})),
               '', '', '', toDecimal64(0, 9), 0, 0, 0,
               concat('{{"label": "bench", "prefix": "2api_', toString(n), '"}}')
        FROM (SELECT number AS n FROM numbers({TENANTS * KEYS_PER_TENANT}))""")
    timings["ledger_events"] = time.perf_counter() - started
    return timings


def time_queries(store: AnalyticsStore, runs: int) -> list[dict[str, Any]]:
    results = []
    for label, name, params, tenant in QUERIES:
        scope = queries.Scope(tenant)
        samples = []
        answer: dict[str, Any] = {}
        for _ in range(runs + 1):  # the first run is reported apart: cold caches
            started = time.perf_counter()
            answer = queries.run(store, name, params, scope)
            samples.append((time.perf_counter() - started) * 1000)
        warm = samples[1:]
        results.append({
            "query": label, "name": name, "params": params, "tenant_scoped": tenant is not None,
            "source": answer["source"], "rows_returned": len(answer["data"]),
            "first_ms": round(samples[0], 1), "median_ms": round(statistics.median(warm), 1),
            "max_ms": round(max(warm), 1),
        })
        print(f"  {results[-1]['median_ms']:>8.1f} ms  {label}", flush=True)
    return results


def run(rows: int, runs: int, keep: Path | None = None) -> dict[str, Any]:
    directory = keep or Path(tempfile.mkdtemp(prefix="twoapi-bench-analytics-"))
    store = AnalyticsStore.open(AnalyticsConfig(data_dir=directory))
    try:
        migrate(store)
        existing = int(store.scalar("SELECT count() FROM requests") or 0)
        if existing != rows:
            for table in ("requests", "attempts", "ledger_events", "usage_hourly", "usage_daily", "provider_hourly",
                          "latency_hourly", "attempts_hourly"):
                store.command(f"TRUNCATE TABLE {table}")
            print(f"generating {rows:,} requests in {directory} …", flush=True)
            generation = generate(store, rows)
        else:
            generation = {}
        # As background merges would, given time.
        for rollup in ("usage_hourly", "usage_daily", "provider_hourly", "latency_hourly", "attempts_hourly"):
            store.command(f"OPTIMIZE TABLE {rollup} FINAL")
        sizes = dict(store.query("SELECT table, sum(rows) FROM system.parts WHERE active AND database = "
                                 "currentDatabase() GROUP BY table")[1])
        disk = int(store.scalar("SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = "
                                "currentDatabase()") or 0)
        print(f"rows: {sizes}", flush=True)
        results = time_queries(store, runs)
        engine = store.scalar("SELECT version()")
    finally:
        store.close()
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    return {
        "scenario": "analytics", "date": datetime.now(UTC).isoformat(), "engine": f"chDB {engine}",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": _cpus()},
        "rows": rows, "table_rows": sizes, "bytes_on_disk": disk,
        "generation_s": {k: round(v, 1) for k, v in generation.items()}, "runs": runs, "queries": results,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [f"{report['rows']:,} request rows on {report['engine']} ({report['machine']['cpus']} CPUs), "
             f"median of {report['runs']} warm runs:", "",
             "| query | source | rows out | first ms | median ms | max ms |", "|---|---|---:|---:|---:|---:|"]
    for q in report["queries"]:
        lines.append(f"| {q['query']} | {q['source']} | {q['rows_returned']} | {q['first_ms']} | "
                     f"{q['median_ms']} | {q['max_ms']} |")
    return "\n".join(lines)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the generated store in this directory")
    args = parser.parse_args()
    report = run(args.rows, args.runs, args.keep)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"analytics-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print("\n" + markdown(report) + f"\n\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
