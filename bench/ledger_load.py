"""Scenario 3: sustained events/s the batched ledger writer commits, on PostgreSQL and
SQLite, with the events a gateway request really produces (6 for a plain request:
Received, Routed, AttemptStarted, AttemptSucceeded, UsageMetered, Completed; 7 for a
stream, which adds StreamSummarized; half of the requests stream, 6.5 on average).

The producer keeps a window of requests in flight (as that many concurrent gateway
requests would each wait on their commit), builds each RequestTrace on the fly as the
request path does, and submits it to `ledger.writer.LedgerWriter`. Reported per store
and window: events/s and requests/s committed, commits and mean batch size, commit
wait p50/p99 (submit to durable), and CPU per event of this process (producer +
writer thread) and of PostgreSQL's backends.

Projection lag (commit to balance update) needs the balance projection (issue 5).
"""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.overhead import service_cpu_seconds
from bench.stats import summary_ms

CANDIDATES = [{"requested": "openai/gpt-4o-mini", "model": "openai/gpt-4o-mini", "score": None, "excluded": None}]


def make_trace(request_id: uuid.UUID, stream: bool) -> Any:
    from ledger.events import Request
    from ledger.trace import RequestTrace

    trace = RequestTrace(request_id)
    trace.add(Request.Received, tenant="demo", key_id="0295401fbacd5cd2976343a9614b7f9b",
              endpoint="chat.completions", model="openai/gpt-4o-mini", stream=stream, body_bytes=142,
              body_sha256="9f2c0d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49382716f5e4d3c2b1a0f9e8d7c6", messages=1)
    trace.add(Request.Routed, strategy="explicit", candidates=CANDIDATES, chain=["openai/gpt-4o-mini"],
              reason="explicit model")
    trace.add(Request.AttemptStarted, attempt=1, provider="openai", model="openai/gpt-4o-mini")
    trace.add(Request.AttemptSucceeded, attempt=1, provider="openai", model="openai/gpt-4o-mini", status=200,
              ttft_ms=3.214 if stream else None, latency_ms=4.871)
    if stream:
        trace.add(Request.StreamSummarized, chunks=23, bytes=5120, ttft_ms=3.214, duration_ms=4.871,
                  finish_reason="stop", client_disconnected=False)
    trace.add(Request.UsageMetered, provider="openai", model="openai/gpt-4o-mini", input_tokens=18,
              output_tokens=21, cached_tokens=0, source="provider", price_book="catalog-1", cost="0.000015300")
    trace.add(Request.Completed, status=200, latency_ms=5.002)
    return trace


def pump(writer: Any, window: int, duration_s: float) -> dict[str, Any]:
    """Keep `window` requests in flight for `duration_s`; measure what gets committed."""
    slots = threading.BoundedSemaphore(window)
    waits: list[float] = []
    lock = threading.Lock()
    outstanding = [0]
    drained = threading.Event()
    submitting = [True]

    def done(started: float, future: Any) -> None:
        wait = time.perf_counter() - started
        with lock:
            waits.append(wait)
            outstanding[0] -= 1
            if not submitting[0] and outstanding[0] == 0:
                drained.set()
        slots.release()
        if future.exception() is not None:
            failures.append(future.exception())

    failures: list[BaseException] = []
    events0, commits0 = writer.committed_events, writer.commits
    started = time.perf_counter()
    end = started + duration_s
    submitted = 0
    streams = itertools.cycle((False, True))
    while time.perf_counter() < end:
        if not slots.acquire(timeout=0.5):
            continue
        trace = make_trace(uuid.uuid4(), next(streams))
        with lock:
            outstanding[0] += 1
        t = time.perf_counter()
        future = writer.submit(trace)
        future.add_done_callback(lambda f, t=t: done(t, f))
        submitted += 1
    with lock:
        submitting[0] = False
        if outstanding[0] == 0:
            drained.set()
    drained.wait(120)
    elapsed = time.perf_counter() - started
    events = writer.committed_events - events0
    commits = writer.commits - commits0
    return {
        "window": window,
        "requests": submitted,
        "events": events,
        "failures": len(failures),
        "duration_s": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1),
        "requests_per_s": round(submitted / elapsed, 1),
        "commits": commits,
        "mean_requests_per_commit": round(submitted / commits, 1) if commits else None,
        "commit_wait_ms": summary_ms(waits),
    }


def bench_store(store: str, windows: list[int], duration_s: float, runs: int,
                database_url: str | None) -> list[dict[str, Any]]:
    from ledger.application import Ledger
    from ledger.writer import LedgerWriter

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        ledger = Ledger.open(database_url, Path(tmp))
        writer = LedgerWriter(ledger)
        try:
            pump(writer, 64, min(1.0, duration_s))  # warm-up: connections, prepared statements
            for window in windows:
                for run in range(runs):
                    cpu0 = time.process_time()
                    pg0 = service_cpu_seconds("postgres") if store == "postgres" else 0.0
                    row = pump(writer, window, duration_s)
                    cpu = time.process_time() - cpu0
                    row.update(store=store, run=run,
                               client_cpu_us_per_event=round(cpu * 1e6 / max(row["events"], 1), 1))
                    if store == "postgres":
                        pg = service_cpu_seconds("postgres") - pg0
                        row["postgres_cpu_us_per_event"] = round(pg * 1e6 / max(row["events"], 1), 1)
                    rows.append(row)
        finally:
            writer.close()
            ledger.close()
    return rows


def run_ledger(windows: list[int], duration_s: float, runs: int, stores: list[str]) -> dict[str, Any]:
    from bench import peers
    from bench.stats import median

    rows: list[dict[str, Any]] = []
    if "postgres" in stores:
        schema = peers.bench_schema()
        try:
            rows += bench_store("postgres", windows, duration_s, runs, f"{peers.POSTGRES_URL}?schema={schema}")
        finally:
            peers.drop_schema(schema)
    if "sqlite" in stores:
        rows += bench_store("sqlite", windows, duration_s, runs, None)
    summary: dict[str, dict[str, Any]] = {}
    for store in stores:
        for window in windows:
            runs_of = [r for r in rows if r["store"] == store and r["window"] == window]
            if not runs_of:
                continue
            summary.setdefault(store, {})[str(window)] = {
                "events_per_s": median(r["events_per_s"] for r in runs_of),
                "requests_per_s": median(r["requests_per_s"] for r in runs_of),
                "mean_requests_per_commit": median(r["mean_requests_per_commit"] for r in runs_of),
                "commit_wait_p50_ms": median(r["commit_wait_ms"]["p50"] for r in runs_of),
                "commit_wait_p99_ms": median(r["commit_wait_ms"]["p99"] for r in runs_of),
                "client_cpu_us_per_event": median(r["client_cpu_us_per_event"] for r in runs_of),
                "postgres_cpu_us_per_event": median(r.get("postgres_cpu_us_per_event") for r in runs_of),
                "failures": sum(r["failures"] for r in runs_of),
            }
    best_pg = max((v["events_per_s"] or 0 for v in summary.get("postgres", {}).values()), default=None)
    return {
        "config": {"windows": windows, "duration_s": duration_s, "runs": runs, "stores": stores,
                   "events_per_request": 6.5, "stream_share": 0.5},
        "samples": rows,
        "summary": summary,
        "best_events_per_s": {s: max((v["events_per_s"] or 0 for v in summary.get(s, {}).values()), default=None)
                              for s in stores},
        "targets": [{"target": "ledger >= 20,000 events/s committed to PostgreSQL", "measured": best_pg,
                     "met": None if best_pg is None else best_pg >= 20000},
                    {"target": "projection lag p99 <= 250 ms at 300 req/s", "measured": None, "met": None,
                     "note": "needs the balance projection (issue 5)"}],
        "projection_lag": "needs issue 5 (balance projection)",
    }
