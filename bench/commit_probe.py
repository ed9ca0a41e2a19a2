"""How long a durable commit takes on this machine's PostgreSQL, alone.

The gateway answers only after its events are committed (DESIGN.md, data flow step 5),
so every commit's fsync is on some request's path, and the disk's slowest fsyncs are
the floor under the gateway's tail latency. This probe commits one small row at a
fixed rate, nothing else running in it, and reports the latency distribution: the
same figure with `synchronous_commit = off` shows how much of it is the flush to disk.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from bench.peers import POSTGRES_URL
from bench.stats import summary_ms


def probe(seconds: float = 10.0, rate: float = 200.0, synchronous: bool = True) -> dict[str, Any]:
    """One-row INSERT + COMMIT at `rate` per second for `seconds`: latency in ms."""
    latencies: list[float] = []
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        if not synchronous:
            conn.execute("SET synchronous_commit = off")
        conn.execute("CREATE TEMP TABLE commit_probe (at double precision)")
        interval = 1.0 / rate
        started = time.perf_counter()
        for i in range(int(seconds * rate)):
            delay = started + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            with conn.transaction():
                conn.execute("INSERT INTO commit_probe VALUES (%s)", (t0,))
            latencies.append(time.perf_counter() - t0)
    stats = summary_ms(latencies)
    return {"synchronous_commit": "on" if synchronous else "off", "commits": len(latencies),
            "rate": rate, "latency_ms": stats}


def probes(seconds: float = 10.0, rate: float = 200.0) -> list[dict[str, Any]]:
    return [probe(seconds, rate, synchronous=True), probe(seconds, rate, synchronous=False)]


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["\nPostgreSQL commit latency on this machine, one row per commit, alone (bench/commit_probe.py):\n",
             "| synchronous_commit | commits | p50 ms | p99 ms | p99.9 ms | max ms |", "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        s = r["latency_ms"]
        lines.append(f"| {r['synchronous_commit']} | {r['commits']} | {s['p50']} | {s['p99']} | {s['p999']} "
                     f"| {s['max']} |")
    return "\n".join(lines)
