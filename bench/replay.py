"""Scenario 5: finance audit over a large ledger on PostgreSQL (issue 7).

`python -m bench replay [--requests N]` builds a ledger of N gateway requests (default
1,000,000, so N `UsageMetered` events) in a fresh PostgreSQL schema, with the events
the gateway writes for each request (ledger/trace.py `RequestTrace`, as gateway/chat.py
fills it: Received, Routed, AttemptStarted, AttemptSucceeded, StreamSummarized for
streams, UsageMetered priced by the base price book, Completed; a few retried requests
add AttemptFailed, RetryScheduled and a second attempt; a few failed requests, with no
usage, come on top), spread over the last 30 days across a few tenants and keys. Then,
each on that same ledger, it times:

1. `seal_pending`: the first seal of everything (ledger/audit/seal.py);
2. `plan`: a dry-run re-pricing of the whole window with another book (ledger/repricing.py);
3. `apply` of that plan (RepricingRun + BalanceAdjusted, one transaction; the plan is
   made again, untimed, in the same process first);
4. `verify` without the projection (ledger/audit/verify.py);
5. an export of every line to parquet (ledger/audit/export.py);
6. the tenancy projection caught up from nothing (ledger/projections/runner.catch_up),
   then `verify` compared with it.

Each phase runs in its own forked process that opens its own `Ledger`, so its peak RSS
(`resource.getrusage`) and CPU time are its own; the parent never opens the ledger. A
phase that has not returned after `--phase-timeout` is killed and recorded as such.
Loading is reported too, but it is not the figure. The JSON is rewritten after each
phase. The schema is dropped at the end unless `--keep`; `--schema NAME --phases ...`
measures again on a kept ledger. `--profile DIR` runs the phases under cProfile (use a
smaller size).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import multiprocessing
import os
import pstats
import random
import resource
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from psycopg import sql

from bench import procs, report

DEFAULT_REQUESTS = 1_000_000
QUICK_REQUESTS = 100_000
TINY_REQUESTS = 2_000
PHASES = ("seal", "plan", "apply", "verify", "export", "projection")  # in this order; `--phases` picks some
DAYS = 30
REQUESTS_PER_COMMIT = 1_000
STREAM_SHARE = 0.4
RETRY_SHARE = 0.03  # requests whose first attempt fails and is retried
FAILED_SHARE = 0.02  # extra requests that fail (no usage), on top of the N with usage
# (tenant, share of the traffic): skewed, as real tenants are
TENANTS = [("acme", 0.40), ("globex", 0.25), ("initech", 0.15), ("umbrella", 0.12), ("hooli", 0.08)]
KEYS_PER_TENANT = 3
# (model id, share): chat models of the catalog
MODELS = [("openai/gpt-4o-mini", 0.35), ("openai/gpt-4o", 0.15), ("anthropic/claude-3-5-haiku", 0.12),
          ("anthropic/claude-3-5-sonnet", 0.13), ("google/gemini-2.0-flash", 0.15), ("google/gemini-2.5-flash", 0.10)]
# The "what if" book: the base book with these list prices changed (the others as they are).
WHAT_IF = {"openai/gpt-4o-mini": {"output": "0.5"}, "anthropic/claude-3-5-sonnet": {"input": "2.7"},
           "google/gemini-2.0-flash": {"input": "0.08", "output": "0.32"}, "openai/gpt-4o": {"output": "9"}}


# -- the phases, each in its own process --------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """This process's CPU and that of its children it has waited for (re-pricing's
    worker processes)."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def _children_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class Phase:
    """What a phase's process reports: wall and CPU time, peak RSS, and its figures."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.cpu0 = _cpu_s()
        self.rss_at_start_mb = _rss_mb()

    def done(self, **figures: Any) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        done = {"wall_s": round(wall, 2), "cpu_s": round(_cpu_s() - self.cpu0, 2),
                "peak_rss_mb": round(_rss_mb(), 1), "rss_at_start_mb": round(self.rss_at_start_mb, 1), **figures}
        workers_rss = _children_rss_mb()
        if workers_rss:
            done["workers_peak_rss_mb"] = round(workers_rss, 1)
        return done


def _per_s(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def postgres_cpu_s() -> float:
    """CPU of PostgreSQL's processes, those that have exited included: a phase's backends
    end with its process, and the postmaster that reaps them counts their CPU as its
    children's (cutime, cstime). Every session's, not only this run's."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # utime, stime, cutime, cstime: fields 14-17
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def _open(url: str) -> Any:
    from ledger.application import Ledger

    return Ledger.open(url, Path(tempfile.gettempdir()))


def _child(conn: Any, fn: Callable[..., dict[str, Any]], args: tuple[Any, ...], profile: Path | None,
           name: str) -> None:
    try:
        if profile is None:
            result = fn(*args)
        else:
            profiler = cProfile.Profile()
            result = profiler.runcall(fn, *args)
            profile.mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(str(profile / f"{name}.prof"))
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(30)
            (profile / f"{name}.txt").write_text(text.getvalue())
        conn.send(("ok", result))
    except BaseException as error:  # reported by the parent
        conn.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def in_process(name: str, fn: Callable[..., dict[str, Any]], *args: Any, profile: Path | None = None,
               timeout: float | None = None, log: Any = sys.stderr) -> dict[str, Any]:
    """Run `fn(*args)` in a forked process (its own RSS and CPU); its result. After
    `timeout` seconds the process is killed and the result says so."""
    print(f"bench replay: {name} ...", file=log, flush=True)
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    pg0, started = postgres_cpu_s(), time.perf_counter()
    child = ctx.Process(target=_child, args=(send, fn, args, profile, name), name=f"bench-replay-{name}")
    child.start()
    send.close()
    try:
        if timeout is not None and not receive.poll(timeout):
            child.kill()
            child.join()
            print(f"bench replay: {name}: no result after {timeout:.0f} s: killed", file=log, flush=True)
            return {"error": f"no result after {timeout:.0f} s (killed)", "wall_s": round(timeout, 1)}
        status, result = receive.recv()
    except EOFError:
        status, result = "error", "the phase's process died"
    child.join()
    if status != "ok":
        raise RuntimeError(f"phase {name} failed: {result}")
    result["postgres_cpu_s"] = round(postgres_cpu_s() - pg0, 2)
    print(f"bench replay: {name}: {time.perf_counter() - started:.1f} s", file=log, flush=True)
    return result


# -- 0. the ledger ------------------------------------------------------------------------


def _pick(rng: random.Random, table: list[tuple[str, float]]) -> list[str]:
    names = [n for n, _ in table]
    weights = [w for _, w in table]
    return rng.choices(names, weights, k=4096)


def what_if_book(base: Any) -> tuple[Any, dict[str, dict[str, str]]]:
    """The book re-priced with: a price table, as `twoapi reprice --price-book FILE` reads one."""
    from ledger.price_books import book_of, parse_prices
    from ledger.repricing import file_version

    table = {model: {"input": str(p.input), "output": str(p.output), "cached_input": str(p.cached_input)}
             for model, p in base.prices.items() if not p.image}
    for model, change in WHAT_IF.items():
        table[model] = {**table[model], **change}
    prices = parse_prices(table)
    version = file_version(prices)
    return book_of(version, prices), prices


def load(url: str, requests: int, seed: int, end: float) -> dict[str, Any]:
    """Tenants, credits and keys, then `requests` requests with usage (and FAILED_SHARE
    more without), written REQUESTS_PER_COMMIT per transaction."""
    from gateway.price_list import base_price_book
    from ledger.events import Request
    from ledger.trace import RequestTrace

    phase = Phase()
    ledger = _open(url)
    keys: dict[str, list[str]] = {}
    for name, _ in TENANTS:
        ledger.create_tenant(name)
        ledger.add_credits(name, Decimal(1_000_000), reference=f"bench opening balance of {name}")
        keys[name] = [ledger.issue_key(name, label=f"bench key {i}").key_id for i in range(KEYS_PER_TENANT)]
    book = base_price_book()
    catalog_models = {m: m.split("/", 1)[0] for m, _ in MODELS}
    rng = random.Random(seed)
    tenants, models = _pick(rng, TENANTS), _pick(rng, MODELS)
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1024)]
    every = round(1 / FAILED_SHARE)  # each every-th request fails
    total = requests + requests // (every - 1) + 1
    start = end - DAYS * 86400
    step = (end - start) / total
    mapper = ledger.mapper  # as the ledger writer maps a batch
    append = getattr(ledger.recorder, "append_events", None) or ledger.recorder.insert_events
    writer = ThreadPoolExecutor(1, thread_name_prefix="bench-load")  # overlaps PostgreSQL's insert with building
    pending: Future[Any] | None = None
    events = usage = 0
    batch: list[Any] = []
    with_usage = 0
    i = -1
    while with_usage < requests:
        i += 1
        at = start + i * step
        rid = uuid.UUID(int=rng.getrandbits(128), version=4)
        tenant = tenants[rng.getrandbits(12)]
        key_id = keys[tenant][rng.randrange(KEYS_PER_TENANT)]
        model = models[rng.getrandbits(12)]
        provider = catalog_models[model]
        stream = rng.random() < STREAM_SHARE
        fails = i % every == every - 1
        trace = RequestTrace(rid)
        add = trace.entries.append
        add((Request.Received, at, {
            "tenant": tenant, "key_id": key_id, "endpoint": "chat.completions", "model": model, "stream": stream,
            "body_bytes": 200 + rng.randrange(8000), "body_sha256": hashes[i & 1023],
            "messages": 1 + rng.randrange(12)}))
        add((Request.Routed, at + 0.0002, {
            "strategy": "explicit", "candidates": [{"provider": provider, "model": model, "score": None,
                                                    "excluded": None}],
            "chain": [model], "reason": "explicit model",
            "options": {"max_attempts": {"value": 3, "from": "config"}}}))
        add((Request.AttemptStarted, at + 0.0003, {"attempt": 1, "provider": provider, "model": model}))
        attempt = 1
        latency = 300 + rng.random() * 3000
        if fails or rng.random() < RETRY_SHARE:
            add((Request.AttemptFailed, at + 0.2, {
                "attempt": 1, "provider": provider, "model": model, "error_code": "upstream_overloaded",
                "status": 529, "retryable": True, "latency_ms": 200.0, "message": "The provider is overloaded."}))
            if fails:
                add((Request.Failed, at + 0.21, {"status": 503, "error_code": "upstream_overloaded",
                                                 "message": "The provider is overloaded.", "latency_ms": 210.0}))
                batch.append(trace)
                continue
            add((Request.RetryScheduled, at + 0.2, {"model": model, "delay_ms": 250.0, "retry_after_ms": None}))
            attempt = 2
            add((Request.AttemptStarted, at + 0.45, {"attempt": 2, "provider": provider, "model": model}))
        done = at + latency / 1000
        ttft = round(latency * 0.2, 3) if stream else None
        add((Request.AttemptSucceeded, done, {"attempt": attempt, "provider": provider, "model": model,
                                              "status": 200, "ttft_ms": ttft, "latency_ms": round(latency, 3)}))
        if stream:
            add((Request.StreamSummarized, done, {"chunks": 40, "bytes": 9000, "ttft_ms": ttft,
                                                  "duration_ms": round(latency, 3), "finish_reason": "stop",
                                                  "client_disconnected": False}))
        input_tokens = 50 + int(rng.expovariate(1 / 1500))
        cached = (input_tokens // 2) & ~63 if rng.random() < 0.2 else 0
        output_tokens = 10 + int(rng.expovariate(1 / 350))
        cost = book.cost(model, input_tokens, output_tokens, cached)
        add((Request.UsageMetered, done, {
            "provider": provider, "model": model, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cached_tokens": cached, "source": "provider", "price_book": book.version,
            "cost": format(cost, "f"), "images": 0}))
        add((Request.Completed, done + 0.0005, {"status": 200, "latency_ms": round(latency + 0.5, 3)}))
        batch.append(trace)
        with_usage += 1
        if len(batch) >= REQUESTS_PER_COMMIT:
            stored = [e for t in batch for e in t.stored_events(mapper)]
            events += len(stored)
            batch = []
            if pending is not None:
                pending.result()
            pending = writer.submit(append, stored)
    if batch:
        stored = [e for t in batch for e in t.stored_events(mapper)]
        events += len(stored)
        if pending is not None:
            pending.result()
        pending = writer.submit(append, stored)
    if pending is not None:
        pending.result()
    writer.shutdown()
    usage = with_usage
    stored_total = ledger.recorder.max_notification_id() or 0
    result = phase.done(requests=i + 1, usage_events=usage, events=events, stored_events=stored_total,
                        window_from=datetime.fromtimestamp(start, UTC).isoformat(),
                        window_to=datetime.fromtimestamp(end, UTC).isoformat())
    result["events_per_s"] = _per_s(events, result["wall_s"])
    result["requests_per_commit"] = REQUESTS_PER_COMMIT
    return result


# -- 1-6. the audit work --------------------------------------------------------------------


def seal(url: str) -> dict[str, Any]:
    from ledger.audit.seal import seal_pending, seals

    phase = Phase()
    ledger = _open(url)
    sealed = seal_pending(ledger)
    result = phase.done(sealed=sealed)
    result["events_per_s"] = _per_s(sealed, result["wall_s"])
    result["seals"] = len(seals(ledger))
    return result


def replan(url: str, start: str, end: str, applying: bool, workers: int = 1) -> dict[str, Any]:
    """`plan` (a dry run) over [start, end) with the what-if book, by `workers` processes
    (as `twoapi reprice --workers`); with `applying`, the plan is made again untimed
    and `apply` is timed (the same process holds the plan)."""
    from gateway.price_list import base_price_book
    from ledger.repricing import apply, plan

    ledger = _open(url)
    book, prices = what_if_book(base_price_book())
    phase = Phase()
    result = plan(ledger, book, datetime.fromisoformat(start), datetime.fromisoformat(end), prices=prices,
                  workers=workers)
    if not applying:
        planned = phase.done()
        summary = result.report()
        planned.update(usage_events=result.scanned, changed=result.changed, unpriced=result.unpriced,
                       unattributed=result.unattributed, price_book=book.version, total=summary["total"],
                       workers=workers,
                       usage_events_per_s=_per_s(result.scanned, planned["wall_s"]), tenants=len(result.deltas()))
        return planned
    planned_s = round(time.perf_counter() - phase.started, 2)
    applying_ = Phase()
    head0 = ledger.recorder.max_notification_id() or 0
    applied = apply(ledger, result)
    recorded = (ledger.recorder.max_notification_id() or 0) - head0
    done = applying_.done(run_id=applied.run_id, already=applied.already, corrected=applied.events,
                          events_recorded=recorded, deltas=applied.deltas, tenants_adjusted=len(applied.deltas),
                          plan_before_s=planned_s)
    done["corrections_per_s"] = _per_s(applied.events, done["wall_s"])
    done["peak_rss_mb"] = round(_rss_mb(), 1)  # the plan it applies is in this process too
    return done


def verify_ledger(url: str, with_projection: bool) -> dict[str, Any]:
    from gateway.price_list import base_price_book
    from ledger.audit.verify import verify
    from ledger.projections.runner import close_view, open_view

    ledger = _open(url)
    view = open_view(url, Path(tempfile.gettempdir())) if with_projection else None
    phase = Phase()
    try:
        found = verify(ledger, base_price_book(), view)
    finally:
        if view is not None:
            close_view(view)
    result = phase.done(ok=found.ok, findings=len(found.findings), first_findings=[str(f) for f in found.findings[:5]],
                        events=found.events, requests=found.requests, usage_events=found.usage_events,
                        sealed=found.sealed, unsealed=found.unsealed, seals=found.seals, checked=found.checked)
    result["events_per_s"] = _per_s(found.events, result["wall_s"])
    result["usage_events_per_s"] = _per_s(found.usage_events, result["wall_s"])
    return result


def project(url: str) -> dict[str, Any]:
    from ledger.projections.runner import catch_up, close_view, open_view
    from ledger.projections.tenancy import TOPICS

    ledger = _open(url)
    data_dir = Path(tempfile.gettempdir())
    view = open_view(url, data_dir)
    phase = Phase()
    try:
        ok = catch_up(url, data_dir, ledger, view, timeout=6 * 3600)
    finally:
        close_view(view)
    result = phase.done(caught_up=ok)
    # the events it applies (its topics), counted after the clock stopped
    counted = 0
    after = 0
    while True:
        page = ledger.recorder.select_notifications(after, 50_000, topics=TOPICS, inclusive_of_start=False)
        counted += len(page)
        if len(page) < 50_000:
            break
        after = page[-1].id
    result["events"] = counted
    result["events_per_s"] = _per_s(counted, result["wall_s"])
    return result


def export_parquet(url: str, out: str, start: str, end: str) -> dict[str, Any]:
    from gateway.price_list import base_price_book
    from ledger.audit.export import export
    from ledger.price_books import PriceBooks

    ledger = _open(url)
    books = PriceBooks(base_price_book())
    books.refresh(ledger)
    phase = Phase()
    with open(out, "wb") as file:
        totals = export(ledger, books, file, "parquet", datetime.fromisoformat(start), datetime.fromisoformat(end))
    result = phase.done(**totals.as_dict(), file_mb=round(os.path.getsize(out) / 1e6, 1))
    result["lines_per_s"] = _per_s(totals.lines, result["wall_s"])
    return result


# -- the run ---------------------------------------------------------------------------------


def idle_rss(url: str) -> dict[str, Any]:
    """A phase's process that only opens the ledger: the floor under every peak RSS."""
    phase = Phase()
    _open(url)
    import pyarrow  # noqa: F401  (the export's, so the floor is comparable)

    return phase.done()


def run_replay(requests: int, keep: bool, projection: bool, profile: Path | None, schema: str | None = None,
               only: tuple[str, ...] = PHASES, timeout: float | None = None, seed: int = 7, workers: int = 1,
               checkpoint: Callable[[dict[str, Any]], None] | None = None, log: Any = sys.stderr) -> dict[str, Any]:
    """Build the ledger (or, given `schema`, use the one a `--keep` run left there) and
    time every phase on it; `checkpoint` is called with the result after each phase."""
    from bench import peers

    reuse = schema is not None
    schema = schema or "bench_replay_" + time.strftime("%Y%m%d_%H%M%S") + "_" + uuid.uuid4().hex[:6]
    url = f"{peers.POSTGRES_URL}?schema={schema}"
    result: dict[str, Any] = {"schema": schema, "kept": keep or reuse, "reused_ledger": reuse,
                              "requests_with_usage": None if reuse else requests, "what_if_changes": WHAT_IF,
                              "tenants": len(TENANTS), "keys": len(TENANTS) * KEYS_PER_TENANT, "days": DAYS,
                              "phases": {}}
    phases = result["phases"]
    # re-price and export the whole ledger: `twoapi reprice` / `ledger export` without --from/--to
    window = (datetime(1970, 1, 1, tzinfo=UTC).isoformat(), (datetime.now(UTC) + timedelta(days=1)).isoformat())

    def run(name: str, fn: Callable[..., dict[str, Any]], *args: Any, profiled: bool = True) -> dict[str, Any]:
        phases[name] = in_process(name, fn, *args, profile=profile if profiled else None, timeout=timeout, log=log)
        if checkpoint is not None:
            checkpoint(result)
        return phases[name]

    try:
        if not reuse:
            run("load", load, url, requests, seed, time.time() - 60, profiled=False)
            # A ledger at rest, as autovacuum leaves it some minutes after a bulk load:
            # left to autovacuum, its pass over the new table overlapped the first
            # phases and its CPU (~45 s at 1M requests) landed in theirs.
            run("vacuum", vacuum_analyze, schema, profiled=False)
        run("idle", idle_rss, url, profiled=False)
        if "seal" in only:
            run("seal", seal, url)
        if "plan" in only:
            run("plan", replan, url, *window, False, workers)
        if "apply" in only:
            run("apply", replan, url, *window, True, workers)
        if "verify" in only:
            run("verify", verify_ledger, url, False)
        if "export" in only:
            with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
                run("export", export_parquet, url, str(Path(tmp) / "ledger.parquet"), *window)
        if projection and "projection" in only:
            run("projection", project, url, profiled=False)
            run("verify_with_projection", verify_ledger, url, True, profiled=False)
        result["database_mb"] = _schema_mb(schema)
    finally:
        if not (keep or reuse):
            peers.drop_schema(schema)
    return result


def vacuum_analyze(schema: str) -> dict[str, Any]:
    """VACUUM (ANALYZE) every table of the schema (not a figure: setting the scene)."""
    import psycopg

    from bench import peers

    phase = Phase()
    with psycopg.connect(peers.POSTGRES_URL, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'", (schema,))]
        for table in tables:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
    return phase.done(tables=len(tables))


def _schema_mb(schema: str) -> float | None:
    import psycopg

    from bench import peers

    try:
        with psycopg.connect(peers.POSTGRES_URL, connect_timeout=5) as conn:
            row = conn.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                               "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                               (schema,)).fetchone()
    except psycopg.Error:
        return None
    return round(float(row[0] or 0) / 1e6, 1) if row else None


# -- the report --------------------------------------------------------------------------------


def replay_markdown(result: dict[str, Any]) -> str:
    from bench.report import _f, _table

    p = result["phases"]
    v = p.get("verify", {})
    out = [f"### Replay (scenario 5): {_f(v.get('usage_events'))} usage events, {_f(v.get('events'))} events, "
           "PostgreSQL\n",
           f"{result['date']}, git {result['git']}, {result['machine']['cpus']} CPUs "
           f"({result['machine']['cpu_model']}), load average at start "
           f"{result['machine']['loadavg_at_start'][0]}, at end {result['machine'].get('loadavg_at_end', ['-'])[0]}; "
           f"{result['tenants']} tenants, {result['keys']} keys, {result['days']} days; "
           f"database {_f(result.get('database_mb'))} MB.\n"]
    rows: list[list[Any]] = []
    lines: list[tuple[str, str, Callable[[dict[str, Any]], tuple[str, Any, Any, str]]]] = [
        ("load", "load (not the figure)", lambda f: (f"{f['requests']:,} requests, {f['requests_per_commit']:,} "
                                                     "per commit", f["events"], f["events_per_s"], "events/s")),
        ("vacuum", "VACUUM (ANALYZE) after the load (not the figure)",
         lambda f: (f"{f['tables']} tables", None, None, "")),
        ("seal", "seal_pending (first seal)", lambda f: (f"{f['seals']} seals", f["sealed"], f["events_per_s"],
                                                         "events/s")),
        ("plan", "re-pricing plan (dry run)", lambda f: (f"{f['changed']:,} change, {f.get('workers', 1)} "
                                                         "process(es)", f["usage_events"],
                                                         f["usage_events_per_s"], "usage events/s")),
        ("apply", "re-pricing apply", lambda f: (f"{f['events_recorded']:,} events recorded", f["corrected"],
                                                 f["corrections_per_s"], "corrections/s")),
        ("verify", "verify, no projection", lambda f: (f"ok={_f(f['ok'])}, {f['findings']} findings", f["events"],
                                                       f["events_per_s"], "events/s")),
        ("export", "export, parquet", lambda f: (f"{_f(f['file_mb'])} MB file", f["lines"], f["lines_per_s"],
                                                 "lines/s")),
        ("projection", "tenancy projection catch-up", lambda f: (f"from nothing, caught up={_f(f['caught_up'])}",
                                                                 f["events"], f["events_per_s"], "events/s")),
        ("verify_with_projection", "verify with the projection",
         lambda f: (f"ok={_f(f['ok'])}, {f['findings']} findings", f["events"], f["events_per_s"], "events/s")),
    ]
    for key, name, cells in lines:
        figures = p.get(key)
        if figures is None:
            continue
        if "error" in figures:
            rows.append([name, figures["error"], None, figures.get("wall_s"), None, "", None, None, None])
            continue
        what, count, rate, unit = cells(figures)
        rows.append([name, what, count, figures.get("wall_s"), rate, unit, figures.get("cpu_s"),
                     figures.get("postgres_cpu_s"), figures.get("peak_rss_mb")])
    out.append(_table(["phase", "what", "count", "wall s", "rate", "unit", "CPU s", "PostgreSQL CPU s",
                       "peak RSS MB"], rows))
    out.append(f"\nPeak RSS is the phase's own process (forked; an idle one that only opens the ledger: "
               f"{_f(p['idle']['peak_rss_mb'])} MB). PostgreSQL CPU is every postgres process on the machine "
               "(other sessions' included).")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=None,
                        help=f"requests with usage, i.e. UsageMetered events (default {DEFAULT_REQUESTS:,}; "
                             f"--quick {QUICK_REQUESTS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS:,} requests")
    parser.add_argument("--tiny", "--smoke", dest="tiny", action="store_true",
                        help=f"{TINY_REQUESTS:,} requests (the harness's smoke test)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema (its name is in the JSON)")
    parser.add_argument("--schema", default=None, metavar="NAME",
                        help="use the ledger a --keep run left in this schema (no load; the schema is kept)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="with --schema: which of them to run (default: all), e.g. export,projection")
    parser.add_argument("--phase-timeout", type=float, default=1200, metavar="S",
                        help="kill a phase that has not finished after S seconds, record that and go on (default 1200)")
    parser.add_argument("--no-projection", action="store_true",
                        help="skip the tenancy projection's catch-up and the verify compared with it")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="run seal, plan, apply, verify and export under cProfile; stats to DIR")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="re-pricing: processes side by side, as `twoapi reprice --workers` (default: one per "
                        "CPU)")
    parser.add_argument("--out", type=Path, default=report.RESULTS_DIR, help="results directory")
    parser.add_argument("--note", default="", help="free text stored with the run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    requests = args.requests or (TINY_REQUESTS if args.tiny else QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS)
    started = time.time()
    result: dict[str, Any] = {
        "scenario": "replay",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "git": report.git_revision(),
        "machine": procs.machine_note(),
        "mode": "tiny" if args.tiny else "quick" if args.quick else "full",
        "note": args.note,
    }
    path = report.write_json(result, args.out, "replay")

    def checkpoint(partial: dict[str, Any]) -> None:  # what is measured so far survives an interrupted run
        path.write_text(json.dumps({**result, **partial}, indent=2, default=str) + "\n")

    only = tuple(p.strip() for p in args.phases.split(",") if p.strip() in PHASES)
    result.update(run_replay(requests, args.keep, not args.no_projection, args.profile, args.schema, only,
                             args.phase_timeout, workers=args.workers, checkpoint=checkpoint))
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.time() - started, 1)
    checkpoint(result)
    print(replay_markdown(result))
    print(f"\n(JSON: {path}; {result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
