"""Scenario 3: sustained events/s the batched ledger writer commits, on PostgreSQL and
SQLite, with the events a gateway request really produces (6 for a plain request:
Received, Routed, AttemptStarted, AttemptSucceeded, UsageMetered, Completed; 7 for a
stream, which adds StreamSummarized; half of the requests stream, 6.5 on average).

The producer keeps a window of requests in flight (as that many concurrent gateway
requests would each wait on their commit), builds each RequestTrace on the fly as the
request path does, and commits it with the writer the gateway uses (the loop writer,
`ledger.loop_writer`, on PostgreSQL; the threaded `ledger.writer` on SQLite). Reported
per store and window: events/s and requests/s committed, commits and mean batch size,
commit wait p50/p99 (submit to durable), and CPU per event of this process (producer
and writer) and of PostgreSQL's backends.

Projection lag: the gateway driven at a steady rate (300 req/s) while the harness samples
the balance projection's status (age of the oldest unapplied event) every 50 ms.
"""

from __future__ import annotations

import asyncio
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
    """Keep `window` requests in flight for `duration_s` from threads (the threaded
    writer's `submit`); measure what gets committed."""
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
    return _pumped(writer, window, submitted, len(failures), waits, started, events0, commits0)


async def pump_on_loop(writer: Any, window: int, duration_s: float) -> dict[str, Any]:
    """The same with the loop writer: `window` tasks, each committing one request
    after another as a gateway request awaits its commit."""
    waits: list[float] = []
    failures = 0
    submitted = 0
    streams = itertools.cycle((False, True))
    events0, commits0 = writer.committed_events, writer.commits
    started = time.perf_counter()
    end = started + duration_s

    async def requests() -> None:
        nonlocal failures, submitted
        while time.perf_counter() < end:
            trace = make_trace(uuid.uuid4(), next(streams))
            submitted += 1
            t = time.perf_counter()
            try:
                await writer.commit(trace)
            except Exception:
                failures += 1
            waits.append(time.perf_counter() - t)

    await asyncio.gather(*(requests() for _ in range(window)))
    return _pumped(writer, window, submitted, failures, waits, started, events0, commits0)


def _pumped(writer: Any, window: int, submitted: int, failures: int, waits: list[float], started: float,
            events0: int, commits0: int) -> dict[str, Any]:
    elapsed = time.perf_counter() - started
    events = writer.committed_events - events0
    commits = writer.commits - commits0
    return {
        "window": window,
        "requests": submitted,
        "events": events,
        "failures": failures,
        "duration_s": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1),
        "requests_per_s": round(submitted / elapsed, 1),
        "commits": commits,
        "mean_requests_per_commit": round(submitted / commits, 1) if commits else None,
        "commit_wait_ms": summary_ms(waits),
    }


def gateway_writer(ledger: Any) -> Any:
    """The writer the gateway uses for this ledger (the loop writer on PostgreSQL),
    or the threaded one for code from before the loop writer (`--baseline`)."""
    try:
        from ledger.loop_writer import writer_for
    except ImportError:
        from ledger.writer import LedgerWriter

        return LedgerWriter(ledger)
    return writer_for(ledger)


def bench_store(store: str, windows: list[int], duration_s: float, runs: int,
                database_url: str | None) -> list[dict[str, Any]]:
    from ledger.application import Ledger

    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        ledger = Ledger.open(database_url, Path(tmp))
        try:
            return asyncio.run(_bench_writer(ledger, store, windows, duration_s, runs))
        finally:
            ledger.close()


async def _bench_writer(ledger: Any, store: str, windows: list[int], duration_s: float,
                        runs: int) -> list[dict[str, Any]]:
    writer = gateway_writer(ledger)
    threaded = hasattr(writer, "submit")
    if not threaded:
        await writer.start()

    async def measure(window: int, seconds: float) -> dict[str, Any]:
        if threaded:
            return await asyncio.to_thread(pump, writer, window, seconds)
        return await pump_on_loop(writer, window, seconds)

    rows = []
    try:
        await measure(64, min(1.0, duration_s))  # warm-up: connections, prepared statements
        for window in windows:
            for run in range(runs):
                cpu0 = time.process_time()
                pg0 = service_cpu_seconds("postgres") if store == "postgres" else 0.0
                row = await measure(window, duration_s)
                cpu = time.process_time() - cpu0
                row.update(store=store, run=run, writer="thread" if threaded else "loop",
                           client_cpu_us_per_event=round(cpu * 1e6 / max(row["events"], 1), 1))
                if store == "postgres":
                    pg = service_cpu_seconds("postgres") - pg0
                    row["postgres_cpu_us_per_event"] = round(pg * 1e6 / max(row["events"], 1), 1)
                rows.append(row)
    finally:
        if threaded:
            await asyncio.to_thread(writer.close)
        else:
            await writer.stop()
    return rows


_IN_TREE = """
import importlib.util, json, sys
sys.path.insert(0, {tree!r})
spec = importlib.util.spec_from_file_location("bench_ledger_load", {harness!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
rows = module.bench_store({store!r}, {windows!r}, {duration!r}, 1, {url!r})
print(json.dumps(rows))
"""


def bench_store_in(tree: Path, store: str, windows: list[int], duration_s: float,
                   database_url: str | None, cpus: str | None) -> list[dict[str, Any]]:
    """One run of `bench_store` in a process of its own, with the ledger code of
    `tree` (this harness either way), so two commits are measured alike."""
    import json
    import subprocess
    import sys

    from bench.procs import pinned

    code = _IN_TREE.format(tree=str(tree), harness=str(Path(__file__).resolve()), store=store, windows=windows,
                           duration=duration_s, url=database_url)
    done = subprocess.run(pinned([sys.executable, "-c", code], cpus), cwd=tree, capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(tree)})
    if done.returncode != 0:
        raise RuntimeError(f"ledger bench in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_ledger(windows: list[int], duration_s: float, runs: int, stores: list[str],
               lag: tuple[float, float, Path] | None = None,
               gateway_env: dict[str, str] | None = None, baseline: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """Writer throughput per store and window; with `lag` = (rate, seconds, log dir),
    also the balance projection's lag behind the gateway at that steady rate. With
    `baseline` (a commit), each run measures that commit's ledger code right after the
    working tree's, each in a process of its own pinned like the gateway (rows
    `store@commit`)."""
    from bench import peers, procs
    from bench.stats import median

    rows: list[dict[str, Any]] = []
    labels = list(stores)
    if baseline:
        tree, rev = peers.baseline_tree(baseline)
        cpus = procs.default_placement()["sut"]
        current = peers.baseline_tree(code)[0] if code else peers.REPO_DIR
        trees = [(current, ""), (tree, "@" + rev)]
        labels = [store + suffix for store in stores for _, suffix in trees]
        for store in stores:
            schemas = {suffix: peers.bench_schema() + suffix.replace("@", "_") for _, suffix in trees}
            try:
                for run in range(runs):
                    for where, suffix in trees:
                        url = f"{peers.POSTGRES_URL}?schema={schemas[suffix]}" if store == "postgres" else None
                        for row in bench_store_in(where, store, windows, duration_s, url, cpus):
                            row.update(store=store + suffix, run=run)
                            rows.append(row)
            finally:
                if store == "postgres":
                    for schema in schemas.values():
                        peers.drop_schema(schema)
    else:
        if "postgres" in stores:
            schema = peers.bench_schema()
            try:
                rows += bench_store("postgres", windows, duration_s, runs, f"{peers.POSTGRES_URL}?schema={schema}")
            finally:
                peers.drop_schema(schema)
        if "sqlite" in stores:
            rows += bench_store("sqlite", windows, duration_s, runs, None)
    summary: dict[str, dict[str, Any]] = {}
    for store in labels:
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
    lag_result = run_projection_lag(lag[0], lag[1], lag[2], gateway_env=gateway_env) if lag else None
    lag_p99 = lag_result["lag_ms"]["p99"] if lag_result else None
    return {
        "config": {"windows": windows, "duration_s": duration_s, "runs": runs, "stores": stores,
                   "events_per_request": 6.5, "stream_share": 0.5},
        "samples": rows,
        "summary": summary,
        "best_events_per_s": {s: max((v["events_per_s"] or 0 for v in summary.get(s, {}).values()), default=None)
                              for s in labels},
        "targets": [{"target": "ledger >= 20,000 events/s committed to PostgreSQL", "measured": best_pg,
                     "met": None if best_pg is None else best_pg >= 20000},
                    {"target": f"projection lag p99 <= 250 ms at {lag[0] if lag else 300:g} req/s",
                     "measured": lag_p99, "met": None if lag_p99 is None else lag_p99 <= 250,
                     **({} if lag else {"note": "not measured in this run"})}],
        "projection_lag": lag_result,
    }


# ------------------------------------------------------------------ projection lag


def run_projection_lag(rate: float, duration_s: float, log_dir: Path, sample_every_s: float = 0.05,
                       gateway_env: dict[str, str] | None = None, log: Any = None) -> dict[str, Any]:
    """Drive the gateway (ledger on PostgreSQL, the tenancy projection in its own thread,
    as `twoapi serve` runs it) at a steady `rate`, and sample the balance projection's
    status from outside every `sample_every_s`: `lag_s` is the age of the oldest ledger
    event the projection has not applied yet (0 when caught up), i.e. an upper bound of
    commit-to-balance-update for every event pending at that instant."""
    import json
    import subprocess
    import sys

    from bench import peers, procs
    from bench.procs import pinned
    from ledger.application import Ledger
    from ledger.projections.runner import close_view, open_view, status

    log = log or sys.stderr
    placement = procs.default_placement()
    schema = peers.bench_schema()
    database_url = f"{peers.POSTGRES_URL}?schema={schema}"
    sim = peers.start_simulator(placement["infra"], log_dir)
    gateway = None
    lags: list[float] = []
    pending: list[int] = []
    try:
        gateway = peers.start_gateway(sim, placement["sut"], log_dir, schema,
                                      {**peers.GATEWAY_ENV, **(gateway_env or {})})
        ledger = Ledger.open(database_url, log_dir / "reader-data")
        view = open_view(database_url, log_dir / "reader-data")
        with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as spec:
            spec.write(json.dumps({"url": gateway.url, "body": gateway.body(False).decode(),
                                   "headers": gateway.all_headers()}).encode())
        cmd = [sys.executable, "-m", "bench.loadgen", "open", spec.name, "--duration", str(duration_s),
               "--rate", str(rate)]
        print(f"bench: projection lag at {rate:g} req/s for {duration_s:g}s", file=log, flush=True)
        gen = subprocess.Popen(pinned(cmd, placement["infra"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=peers.REPO_DIR, text=True)
        warm_until = time.monotonic() + min(2.0, duration_s / 5)
        while gen.poll() is None:
            started = time.monotonic()
            now_status = status(ledger, view)
            if started >= warm_until:
                lags.append(now_status.lag_s)
                pending.append(now_status.pending)
            time.sleep(max(0.0, sample_every_s - (time.monotonic() - started)))
        out, err = gen.communicate()
        Path(spec.name).unlink(missing_ok=True)
        if gen.returncode != 0:
            raise RuntimeError(f"load generator failed: {err[-2000:]}")
        load = json.loads(out.strip().splitlines()[-1])
        final = status(ledger, view)
        close_view(view)
        ledger.close()
    finally:
        if gateway is not None:
            gateway.proc.stop()
        sim.proc.stop()
        try:
            peers.drop_schema(schema)
        except Exception as error:
            print(f"bench: could not drop schema {schema}: {error}", file=log)
    ordered = sorted(lags)
    from bench.stats import percentile

    return {
        "rate": rate,
        "duration_s": duration_s,
        "samples": len(lags),
        "sample_every_s": sample_every_s,
        "load": {k: load[k] for k in ("ok", "errors", "rps", "latency_ms")},
        "lag_ms": {q: (None if percentile(ordered, p) is None else round(percentile(ordered, p) * 1000, 1))
                   for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "caught_up_share": round(sum(1 for x in lags if x == 0) / len(lags), 3) if lags else None,
        "pending_events_max": max(pending, default=None),
        "position_at_end": final.position,
        "head_at_end": final.head,
    }
