"""`python -m bench profile`: where the gateway's CPU goes under load.

Starts the simulator and the gateway (ledger on PostgreSQL) as `overhead` does, drives
the gateway with wrk (plain or streaming, closed loop), and samples the gateway with
py-spy (`pip install py-spy`; samples of non-idle threads approximate CPU). Reports the
share of samples per thread, per package (gateway, adapters, ledger, eventsourcing,
psycopg, quart, hypercorn, ...), and the top functions by self and inclusive samples.
The raw collapsed stacks are kept in the run's log directory (flamegraph.pl or
speedscope read them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import peers, procs
from bench.loadgen import ensure_wrk, run_wrk, wrk_script
from bench.procs import pinned

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Package of a frame, from its (shortened) file name, first match wins.
PACKAGES = [
    ("gateway", "gateway/"), ("adapters", "adapters/"), ("ledger", "ledger/"), ("simulator", "simulator/"),
    ("eventsourcing", "eventsourcing/"), ("psycopg", "psycopg"), ("quart", "quart/"), ("werkzeug", "werkzeug/"),
    ("hypercorn", "hypercorn/"), ("h11", "h11/"), ("aiohttp", "aiohttp/"), ("yarl/multidict", "yarl/"),
    ("yarl/multidict", "multidict/"), ("structlog", "structlog/"), ("opentelemetry", "opentelemetry/"),
    ("redis", "redis/"), ("uvloop", "uvloop/"), ("asyncio", "asyncio/"), ("threading/queue", "threading.py"),
    ("threading/queue", "queue.py"), ("concurrent", "concurrent/"),
]


def package_of(file: str) -> str:
    for name, marker in PACKAGES:
        if marker in file:
            return name
    return "other"


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        frames, _, count = line.rpartition(" ")
        try:
            stacks.append((frames.split(";"), int(count)))
        except ValueError:
            continue
    return stacks


def analyse(stacks: list[tuple[list[str], int]], top: int = 25) -> dict[str, Any]:
    total = sum(count for _, count in stacks) or 1
    threads: Counter[str] = Counter()
    self_funcs: Counter[str] = Counter()
    incl_funcs: Counter[str] = Counter()
    self_pkgs: Counter[str] = Counter()
    incl_pkgs: Counter[str] = Counter()
    for frames, count in stacks:
        thread = "main"
        body = frames
        if frames and frames[0].startswith(("thread ", "process ")):
            # --threads adds "process N:..." and/or "thread (0x...)" pseudo-frames
            body = [f for f in frames if not f.startswith(("thread ", "process "))]
            thread = next((f for f in frames if f.startswith("thread ")), "main")
        threads[thread] += count
        if not body:
            continue
        leaf = _name(body[-1])
        self_funcs[leaf] += count
        self_pkgs[package_of(body[-1])] += count
        for name in {_name(f) for f in body}:
            incl_funcs[name] += count
        for pkg in {package_of(f) for f in body}:
            incl_pkgs[pkg] += count

    def share(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [{"name": k, "share": round(v / total, 4), "samples": v} for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "threads": share(threads, 10),
        "self_by_package": share(self_pkgs, 30),
        "inclusive_by_package": share(incl_pkgs, 30),
        "self_top": share(self_funcs, top),
        "inclusive_top": share(incl_funcs, top),
    }


def _name(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    return f"{match.group('func')} ({match.group('file')})"


def run_profile(concurrency: int, duration_s: float, stream: bool, rate: int, log_dir: Path,
                gil: bool = True, gateway_env: dict[str, str] | None = None,
                log: Any = sys.stderr) -> dict[str, Any]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    if ensure_wrk() is None:
        raise RuntimeError("wrk is required: apt-get install -y wrk")
    placement = procs.default_placement()
    schema = peers.bench_schema()
    sim = peers.start_simulator(placement["infra"], log_dir)
    gateway = None
    try:
        gateway = peers.start_gateway(sim, placement["sut"], log_dir, schema,
                                      {**peers.GATEWAY_ENV, **(gateway_env or {})})
        body, headers = gateway.body(stream), gateway.all_headers()
        run_wrk(gateway.url, body, headers, 8, 2, cpus=placement["infra"])  # warm-up
        script = log_dir / "profile.lua"
        script.write_text(wrk_script(body, headers))
        wrk = subprocess.Popen(
            pinned(["wrk", "-t1", f"-c{concurrency}", f"-d{round(duration_s) + 3}s", "-s", str(script),
                    gateway.url], placement["infra"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        time.sleep(1)
        raw = log_dir / "gateway-profile.txt"
        cpu0 = gateway.proc.cpu_seconds()
        print(f"bench: py-spy on the gateway (pid {gateway.proc.pid}) for {duration_s:g}s under wrk "
              f"c={concurrency} {'streams' if stream else 'plain'}", file=log, flush=True)
        spied = subprocess.run(
            pinned([spy, "record", "-p", str(gateway.proc.pid), "-d", str(round(duration_s)), "-r", str(rate),
                    "--threads", "--format", "raw", "-o", str(raw), "--nonblocking", *(["--gil"] if gil else [])],
                   placement["infra"]),
            capture_output=True, text=True, timeout=duration_s + 60,
        )
        cpu = gateway.proc.cpu_seconds() - cpu0
        wrk_out, _ = wrk.communicate(timeout=duration_s + 30)
        if spied.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed: {spied.stderr[-2000:]}")
        analysis = analyse(parse_collapsed(raw.read_text()))
        rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk_out)
    finally:
        if gateway is not None:
            gateway.proc.stop()
        sim.proc.stop()
        try:
            peers.drop_schema(schema)
        except Exception as error:
            print(f"bench: could not drop schema {schema}: {error}", file=log)
    return {
        "config": {"concurrency": concurrency, "duration_s": duration_s, "stream": stream, "rate_hz": rate,
                   "gil_only": gil},
        "placement": placement,
        "gateway_cpu_util": round(cpu / duration_s, 3),
        "rps_under_profiler": float(rps.group(1)) if rps else None,
        "raw_stacks": str(raw),
        **analysis,
    }


def profile_markdown(result: dict[str, Any]) -> str:
    def rows(items: list[dict[str, Any]]) -> str:
        return "\n".join(f"| {i['name']} | {i['share'] * 100:.1f}% |" for i in items)

    cfg = result["config"]
    what = "samples holding the GIL (Python CPU)" if cfg.get("gil_only") else "samples of non-idle threads"
    out = [f"py-spy, gateway under wrk c={cfg['concurrency']} ({'streams' if cfg['stream'] else 'plain'}), "
           f"{result['samples']} {what}, gateway CPU {result['gateway_cpu_util'] * 100:.0f}% of a core, "
           f"{result['rps_under_profiler']} req/s under the profiler\n",
           "| thread | share |\n|---|---:|\n" + rows(result["threads"]),
           "\n| package (self) | share |\n|---|---:|\n" + rows(result["self_by_package"][:15]),
           "\n| package (inclusive) | share |\n|---|---:|\n" + rows(result["inclusive_by_package"][:15]),
           "\n| function (self) | share |\n|---|---:|\n" + rows(result["self_top"]),
           "\n| function (inclusive) | share |\n|---|---:|\n" + rows(result["inclusive_top"])]
    return "\n".join(out)
