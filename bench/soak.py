"""Scenario 6: the gateway at a fixed rate for a long time (10 minutes by default):
RSS over time (flat after warm-up?) and latency drift (first windows vs last).

Half of the requests stream, half are plain. The simulator and the open-loop
generator share one CPU, the gateway has the other (as in `overhead`); the ledger is
on PostgreSQL. RSS and CPU of the gateway are sampled every few seconds from /proc
while the generator runs; the generator reports p50/p99 per time window.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import peers, procs
from bench.procs import pinned
from bench.stats import median, ratio

SAMPLE_EVERY_S = 5.0


def run_soak(minutes: float, rate: float, window_s: float, log_dir: Path, gateway_env: dict[str, str] | None = None,
             log: Any = sys.stderr) -> dict[str, Any]:
    placement = procs.default_placement()
    schema = peers.bench_schema()
    duration = minutes * 60
    sim = peers.start_simulator(placement["infra"], log_dir)
    gateway = None
    rss: list[dict[str, float]] = []
    try:
        gateway = peers.start_gateway(sim, placement["sut"], log_dir, schema,
                                      {**peers.GATEWAY_ENV, **(gateway_env or {})})
        with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as spec:
            spec.write(json.dumps({"url": gateway.url, "body": gateway.body(False).decode(),
                                   "alt_body": gateway.body(True).decode(),
                                   "headers": gateway.all_headers()}).encode())
        cmd = [sys.executable, "-m", "bench.loadgen", "open", spec.name, "--duration", str(duration),
               "--rate", str(rate), "--window", str(window_s)]
        print(f"bench: soak {minutes:g} min at {rate:g} req/s (half streaming) through the gateway on CPU "
              f"{placement['sut']}", file=log, flush=True)
        started = time.monotonic()
        cpu0 = gateway.proc.cpu_seconds()
        with open(log_dir / "soak-loadgen.out", "wb") as out, open(log_dir / "soak-loadgen.err", "wb") as err:
            gen = subprocess.Popen(pinned(cmd, placement["infra"]), stdout=out, stderr=err, cwd=peers.REPO_DIR)
            next_sample = started
            next_note = started + 60
            while gen.poll() is None:
                now = time.monotonic()
                if now >= next_sample:
                    rss.append({"t_s": round(now - started, 1), "rss_mb": round(gateway.proc.rss_mb(), 1),
                                "main_rss_mb": round(procs.rss_bytes(gateway.proc.pid) / 1e6, 1),
                                "cpu_s": round(gateway.proc.cpu_seconds() - cpu0, 2)})
                    next_sample += SAMPLE_EVERY_S
                if now >= next_note:
                    print(f"bench: soak {now - started:.0f}s  RSS {rss[-1]['rss_mb']} MB (serving process "
                          f"{rss[-1]['main_rss_mb']} MB)", file=log, flush=True)
                    next_note += 60
                if not gateway.proc.alive():
                    gen.kill()
                    raise RuntimeError(f"gateway died during the soak:\n{gateway.proc.log_tail()}")
                time.sleep(0.5)
        Path(spec.name).unlink(missing_ok=True)
        if gen.returncode != 0:
            raise RuntimeError(f"soak generator failed:\n{(log_dir / 'soak-loadgen.err').read_text()[-3000:]}")
        result = json.loads((log_dir / "soak-loadgen.out").read_text().strip().splitlines()[-1])
        stack_info = gateway.describe()
    finally:
        if gateway is not None:
            gateway.proc.stop()
        sim.proc.stop()
        try:
            peers.drop_schema(schema)
        except Exception as error:
            print(f"bench: could not drop schema {schema}: {error}", file=log)
    return {"placement": placement, "config": {"minutes": minutes, "rate": rate, "window_s": window_s,
                                               "stream_share": 0.5},
            "gateway": stack_info, "load": {k: v for k, v in result.items() if k != "windows"},
            "windows": result.get("windows", []), "rss": rss, **drift(rss, result.get("windows", []), duration)}


def drift(rss: list[dict[str, float]], windows: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    """RSS growth after warm-up (the first 10% or 60 s, whichever is shorter) and latency drift."""
    warm = min(60.0, duration * 0.1)
    after = [s for s in rss if s["t_s"] >= warm]
    rss_warm = after[0]["rss_mb"] if after else None
    rss_end = rss[-1]["rss_mb"] if rss else None
    rss_max = max((s["rss_mb"] for s in after), default=None)
    # The growth target is the whole tree's (the serving process and the projection
    # process beside it); the 150 MB target is per serving process, as in `overhead`.
    serving_max = max((s.get("main_rss_mb") or s["rss_mb"] for s in after), default=None)
    growth = ratio((rss_end or 0) - (rss_warm or 0), rss_warm, 4) if rss_warm else None
    settled = [w for w in windows if w["t_s"] >= warm]
    k = max(1, min(3, len(settled) // 3))
    first, last = settled[:k], settled[-k:]
    p99_first = median(w["p99_ms"] for w in first)
    p99_last = median(w["p99_ms"] for w in last)
    p50_first = median(w["p50_ms"] for w in first)
    p50_last = median(w["p50_ms"] for w in last)
    return {
        "rss_after_warmup_mb": rss_warm,
        "rss_end_mb": rss_end,
        "rss_max_mb": rss_max,
        "serving_process_rss_max_mb": serving_max,
        "rss_growth": growth,
        "latency_drift": {"p50_first_ms": p50_first, "p50_last_ms": p50_last, "p99_first_ms": p99_first,
                          "p99_last_ms": p99_last, "p99_last_over_first": ratio(p99_last, p99_first)},
        "targets": [
            {"target": "RSS growth <= 5% over the soak (after warm-up)", "measured": growth,
             "met": None if growth is None else growth <= 0.05},
            {"target": "gateway (serving) process RSS <= 150 MB under load", "measured": serving_max,
             "met": None if serving_max is None else serving_max <= 150},
        ],
    }
