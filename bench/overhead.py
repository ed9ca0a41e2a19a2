"""Scenarios 1 and 2, one measurement run: the same small chat request direct to the
simulator, through the bare pass-through, through 2api and through LiteLLM.

Points (each measured `runs` times, stacks interleaved within a run so drift on this
shared machine hits them alike; medians are reported):
- plain, closed loop with wrk at each concurrency: req/s, p50/p90/p99, added latency
  (stack minus direct), CPU per request of the stack's process tree, RSS;
- streaming, closed loop with wrk: streams/s and total time;
- streaming, time to first token, with the aiohttp generator;
- open loop at a fixed rate (200 req/s) with the aiohttp generator: p50/p99, added p99.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import peers, procs
from bench.loadgen import ensure_wrk, run_aio, run_wrk
from bench.peers import Stack
from bench.stats import diff, median, ratio

ALL_STACKS = ("direct", "bare", "gateway", "gateway_base", "gateway_all", "litellm")
GATEWAYS = ("gateway", "gateway_base", "gateway_all")
MAX_SAMPLE_S = 20.0
_HAVE_WRK = [True]


@dataclass
class OverheadConfig:
    runs: int = 3
    duration_s: float = 3.0
    warmup_s: float = 2.0
    plain_concurrency: list[int] = field(default_factory=lambda: [1, 32, 128])
    stream_concurrency: list[int] = field(default_factory=lambda: [1, 32])
    ttft_concurrency: list[int] = field(default_factory=lambda: [1, 32])
    open_rate: float = 200.0
    open_duration_s: float = 8.0
    stacks: list[str] = field(default_factory=lambda: list(ALL_STACKS))
    pause_s: float = 0.3
    gateway_env: dict[str, str] = field(default_factory=dict)
    # --baseline REV: `gateway_base` runs that commit's code beside the working tree's
    baseline: str | None = None
    base_env: dict[str, str] = field(default_factory=dict)  # gateway_base only, on top of gateway_env
    # --code REV: `gateway` runs that commit's code instead of the working tree's
    code: str | None = None

    @classmethod
    def quick(cls) -> OverheadConfig:
        return cls(runs=1, duration_s=2.0, warmup_s=1.0, plain_concurrency=[1, 32], stream_concurrency=[32],
                   ttft_concurrency=[1], open_duration_s=3.0)

    @classmethod
    def tiny(cls) -> OverheadConfig:
        """For the harness's own smoke test: seconds, not minutes."""
        return cls(runs=1, duration_s=1.0, warmup_s=0.0, plain_concurrency=[1], stream_concurrency=[2],
                   ttft_concurrency=[1], open_rate=20.0, open_duration_s=1.0, stacks=["direct", "bare", "gateway"],
                   pause_s=0.0)


@dataclass(frozen=True)
class Point:
    kind: str  # plain | stream | ttft | open
    level: float  # concurrency, or rate for open

    @property
    def key(self) -> str:
        return f"{self.kind}@{self.level:g}"


def points(config: OverheadConfig) -> list[Point]:
    return (
        [Point("plain", c) for c in config.plain_concurrency]
        + [Point("stream", c) for c in config.stream_concurrency]
        + [Point("ttft", c) for c in config.ttft_concurrency]
        + ([Point("open", config.open_rate)] if config.open_rate and config.open_duration_s else [])
    )


# ---------------------------------------------------------------------- CPU of the services


def _children_cpu() -> float:
    """CPU of the harness's finished children (wrk, the aiohttp generator)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def service_cpu_seconds(comm: str) -> float:
    """CPU of every process named `comm` (PostgreSQL's backends, redis-server)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            name = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if name == comm:
            total += procs.cpu_seconds(int(entry))
    return total


# ---------------------------------------------------------------------- one sample


def measure(stack: Stack, point: Point, config: OverheadConfig, placement: dict[str, str | None],
            sim: Stack, duration_s: float | None = None) -> dict[str, Any]:
    duration = duration_s or config.duration_s
    headers = stack.all_headers()
    cpu0, sim0 = stack.proc.cpu_seconds(), sim.proc.cpu_seconds()
    main0 = procs.cpu_seconds(stack.proc.pid)
    pg0 = service_cpu_seconds("postgres") if stack.name in GATEWAYS else 0.0
    busy0, kids0 = procs.machine_busy_seconds(), _children_cpu()
    wall0 = time.monotonic()
    if point.kind in ("plain", "stream") and not _HAVE_WRK[0]:
        result = run_aio("closed", stack.url, stack.body(point.kind == "stream"), headers,
                         stream=point.kind == "stream", duration_s=duration, concurrency=int(point.level),
                         cpus=placement["infra"])
    elif point.kind in ("plain", "stream"):
        result = run_wrk(stack.url, stack.body(point.kind == "stream"), headers, int(point.level), duration,
                         cpus=placement["infra"])
    elif point.kind == "ttft":
        result = run_aio("closed", stack.url, stack.body(True), headers, stream=True, duration_s=duration,
                         concurrency=int(point.level), cpus=placement["infra"])
    else:
        result = run_aio("open", stack.url, stack.body(False), headers, stream=False,
                         duration_s=config.open_duration_s, rate=point.level, cpus=placement["infra"])
    wall = time.monotonic() - wall0
    closed = point.kind != "open"
    if closed and result["ok"] < 2 * point.level and duration_s is None and duration < MAX_SAMPLE_S:
        # Too slow for the sample's length (each connection finished fewer than two
        # requests): measure again, longer, rather than report nothing.
        longer = min(MAX_SAMPLE_S, max(10.0, 4 * duration))
        sample = measure(stack, point, config, placement, sim, duration_s=longer)
        sample["extended_to_s"] = longer
        return sample
    busy = procs.machine_busy_seconds() - busy0
    cpu = stack.proc.cpu_seconds() - cpu0
    sim_cpu = sim.proc.cpu_seconds() - sim0
    pg_cpu = service_cpu_seconds("postgres") - pg0 if stack.name in GATEWAYS else 0.0
    ours = cpu + (sim_cpu if stack is not sim else 0.0) + (_children_cpu() - kids0) + pg_cpu
    ok = max(result["ok"], 1)
    result.update(
        stack=stack.name,
        point=point.key,
        cpu_ms_per_req=round(cpu * 1000 / ok, 3),
        cpu_util=round(cpu / wall, 3),
        sim_cpu_util=round(sim_cpu / wall, 3),
        rss_mb=round(stack.proc.rss_mb(), 1),
        # the process tree (above) vs its leader alone: differ when a stack runs helpers
        # (LiteLLM's workers, the analytics worker `twoapi serve` starts beside itself)
        processes=len(stack.proc.pids()),
        main_cpu_ms_per_req=round((procs.cpu_seconds(stack.proc.pid) - main0) * 1000 / ok, 3),
        main_rss_mb=round(procs.rss_bytes(stack.proc.pid) / 1e6, 1),
        machine_busy_cpus=round(busy / wall, 2),
        # CPUs' worth of work by anything but the stack, simulator, load generator and
        # PostgreSQL during the sample: other tenants of this machine.
        other_cpus=round(max(busy - ours, 0.0) / wall, 2),
    )
    if stack.name in GATEWAYS:
        result["postgres_cpu_ms_per_req"] = round(pg_cpu * 1000 / ok, 3)
    if not stack.proc.alive():
        raise RuntimeError(f"{stack.name} died during {point.key}:\n{stack.proc.log_tail()}")
    return result


# ---------------------------------------------------------------------- the run


def start_stacks(names: list[str], placement: dict[str, str | None], log_dir: Path,
                 schema: str, gateway_env: dict[str, str] | None = None,
                 baseline: str | None = None, base_env: dict[str, str] | None = None,
                 code: str | None = None) -> tuple[Stack, dict[str, Stack]]:
    sim = peers.start_simulator(placement["infra"], log_dir)
    stacks: dict[str, Stack] = {}
    if "direct" in names:
        stacks["direct"] = sim
    try:
        if "bare" in names:
            stacks["bare"] = peers.start_bare(sim, placement["sut"], log_dir)
        if "gateway" in names:
            tree, rev = peers.baseline_tree(code) if code else (None, None)
            stacks["gateway"] = peers.start_gateway(sim, placement["sut"], log_dir, schema,
                                                    {**peers.GATEWAY_ENV, **(gateway_env or {})}, tree=tree, rev=rev)
        if "gateway_base" in names and baseline:
            tree, rev = peers.baseline_tree(baseline)
            stacks["gateway_base"] = peers.start_gateway(sim, placement["sut"], log_dir, schema + "_base",
                                                         {**peers.GATEWAY_ENV, **(gateway_env or {}),
                                                          **(base_env or {})},
                                                         name="gateway_base", tree=tree, rev=rev)
        if "gateway_all" in names:
            stacks["gateway_all"] = peers.start_gateway(sim, placement["sut"], log_dir, schema + "_all",
                                                        dict(gateway_env or {}), name="gateway_all")
        if "litellm" in names:
            stacks["litellm"] = peers.start_litellm(sim, placement["sut"], log_dir)
    except BaseException:
        stop_stacks(sim, stacks)
        raise
    return sim, stacks


def stop_stacks(sim: Stack, stacks: dict[str, Stack]) -> None:
    for stack in stacks.values():
        if stack is not sim:
            stack.proc.stop()
    sim.proc.stop()


def run_overhead(config: OverheadConfig, log_dir: Path, log: Any = sys.stderr) -> dict[str, Any]:
    _HAVE_WRK[0] = ensure_wrk() is not None
    if not _HAVE_WRK[0]:
        print("bench: wrk not found (apt-get install -y wrk); closed-loop points use the aiohttp generator, "
              "which is slower and may itself be the bottleneck", file=log, flush=True)
    placement = procs.default_placement()
    schema = peers.bench_schema()
    names = [n for n in ALL_STACKS if n in config.stacks]
    if config.baseline and "gateway_base" not in names:
        names.insert(names.index("gateway") + 1 if "gateway" in names else len(names), "gateway_base")
    if not config.baseline and "gateway_base" in names:
        names.remove("gateway_base")
    if "direct" not in names:
        names.insert(0, "direct")  # added latency is measured against it
    print(f"bench: starting {', '.join(names)} (stack under test on CPU {placement['sut']}, "
          f"simulator + load generator on CPU {placement['infra']})", file=log, flush=True)
    sim, stacks = start_stacks(names, placement, log_dir, schema, config.gateway_env, config.baseline,
                               config.base_env, config.code)
    samples: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    try:
        if config.warmup_s and _HAVE_WRK[0]:
            for stack in stacks.values():
                run_wrk(stack.url, stack.body(False), stack.all_headers(), 8, config.warmup_s,
                        cpus=placement["infra"])
                run_wrk(stack.url, stack.body(True), stack.all_headers(), 8, config.warmup_s,
                        cpus=placement["infra"])
        for point in points(config):
            for run in range(config.runs):
                for stack in stacks.values():
                    if point.kind == "open":
                        reason = _cannot_hold_rate(samples, stack.name, point.level)
                        if reason:
                            skipped[f"{stack.name} {point.key}"] = reason
                            continue
                    sample = measure(stack, point, config, placement, sim)
                    sample["run"] = run
                    samples.append(sample)
                    print(f"bench: {point.key:<10} run {run + 1}/{config.runs} {stack.name:<8} "
                          f"{sample['rps']:>8.1f} req/s  p50 {sample['latency_ms']['p50']} ms  "
                          f"errors {sample['errors']}", file=log, flush=True)
                    time.sleep(config.pause_s)
        stacks_info = {name: stack.describe() for name, stack in stacks.items()}
        for name, stack in stacks.items():
            stacks_info[name]["rss_mb_at_end"] = round(stack.proc.rss_mb(), 1)
    finally:
        stop_stacks(sim, stacks)
        for name, used in (("gateway", schema), ("gateway_base", schema + "_base"), ("gateway_all", schema + "_all")):
            if name in stacks:
                try:
                    peers.drop_schema(used)
                except Exception as error:  # report, never mask the run's own error
                    print(f"bench: could not drop schema {used}: {error}", file=log)
    summary = summarize(samples, list(stacks))
    return {
        "placement": {
            "stack_under_test_cpus": placement["sut"] or "unpinned",
            "simulator_and_load_generator_cpus": placement["infra"] or "unpinned",
            "postgres_redis": "system services, unpinned (their CPU is reported separately, not in the stack's)",
        },
        "config": asdict(config),
        "load_generators": {
            "closed_loop": "wrk, 1 thread" if _HAVE_WRK[0] else "aiohttp generator (wrk missing)",
            "ttft_and_open_loop": "aiohttp generator (python -m bench.loadgen, uvloop)",
        },
        "stacks": stacks_info,
        "samples": samples,
        "skipped": skipped,
        "summary": summary,
        "ratios": ratios(summary),
    }


def _cannot_hold_rate(samples: list[dict[str, Any]], stack: str, rate: float) -> str | None:
    best = [s["rps"] for s in samples if s["stack"] == stack and s["point"].startswith("plain@")]
    if best and max(best) < 1.5 * rate:
        return f"closed-loop maximum {max(best):.0f} req/s is below 1.5x the {rate:g} req/s rate"
    return None


# ---------------------------------------------------------------------- summaries


def summarize(samples: list[dict[str, Any]], stack_names: list[str]) -> dict[str, dict[str, Any]]:
    """Medians over runs, per point and stack; added latency against `direct`."""
    out: dict[str, dict[str, Any]] = {}
    keys = list(dict.fromkeys(s["point"] for s in samples))
    for key in keys:
        row: dict[str, Any] = {}
        for name in stack_names:
            runs = [s for s in samples if s["point"] == key and s["stack"] == name]
            if not runs:
                continue
            agg: dict[str, Any] = {
                "runs": len(runs),
                "rps": median(s["rps"] for s in runs),
                "errors": sum(s["errors"] for s in runs),
                "requests": sum(s["requests"] for s in runs),
                "cpu_ms_per_req": median(s["cpu_ms_per_req"] for s in runs),
                "cpu_util": median(s["cpu_util"] for s in runs),
                "sim_cpu_util": median(s["sim_cpu_util"] for s in runs),
                "rss_mb": max(s["rss_mb"] for s in runs),
                "processes": max(s.get("processes", 1) for s in runs),
                "main_cpu_ms_per_req": median(s.get("main_cpu_ms_per_req") for s in runs),
                "main_rss_mb": max((s.get("main_rss_mb") or 0) for s in runs),
                "machine_busy_cpus": median(s.get("machine_busy_cpus") for s in runs),
                "other_cpus": median(s.get("other_cpus") for s in runs),
            }
            for pct in ("p50", "p90", "p99"):
                agg[f"{pct}_ms"] = median(s["latency_ms"][pct] for s in runs)
                if any("ttft_ms" in s for s in runs):
                    agg[f"ttft_{pct}_ms"] = median(s.get("ttft_ms", {}).get(pct) for s in runs)
            if name in GATEWAYS:
                agg["postgres_cpu_ms_per_req"] = median(s.get("postgres_cpu_ms_per_req") for s in runs)
            row[name] = agg
        direct = row.get("direct")
        for name, agg in row.items():
            if direct is not None and name != "direct":
                for pct in ("p50", "p90", "p99"):
                    agg[f"added_{pct}_ms"] = diff(agg[f"{pct}_ms"], direct[f"{pct}_ms"])
                    if f"ttft_{pct}_ms" in agg:
                        agg[f"added_ttft_{pct}_ms"] = diff(agg[f"ttft_{pct}_ms"], direct.get(f"ttft_{pct}_ms"))
        out[key] = row
    return out


def _get(summary: dict[str, Any], point: str, stack: str, metric: str) -> float | None:
    return summary.get(point, {}).get(stack, {}).get(metric)


def ratios(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue's targets are stated in, each a ratio of one run's medians."""
    out: dict[str, Any] = {}
    p1 = "plain@1"
    g_add, b_add, l_add = (_get(summary, p1, s, "added_p50_ms") for s in ("gateway", "bare", "litellm"))
    out["added_p50_c1_ms"] = {"gateway": g_add, "bare": b_add, "litellm": l_add}
    out["added_p50_c1_gateway_over_bare"] = ratio(g_add, b_add)
    out["added_p50_c1_litellm_over_gateway"] = ratio(l_add, g_add)
    p32 = "plain@32"
    g, b, lite = (_get(summary, p32, s, "rps") for s in ("gateway", "bare", "litellm"))
    out["rps_c32"] = {"gateway": g, "bare": b, "litellm": lite, "direct": _get(summary, p32, "direct", "rps")}
    out["rps_c32_gateway_over_bare"] = ratio(g, b)
    out["rps_c32_gateway_over_litellm"] = ratio(g, lite)
    gateway_rows = [row["gateway"] for row in summary.values() if "gateway" in row]
    out["errors_gateway_all_points"] = sum(row["errors"] for row in gateway_rows) if gateway_rows else None
    s32 = next((k for k in summary if k.startswith("stream@") and k != "stream@1"), None) or "stream@1"
    g, lite = (_get(summary, s32, s, "rps") for s in ("gateway", "litellm"))
    out["streams_per_s"] = {"point": s32, "gateway": g, "litellm": lite, "bare": _get(summary, s32, "bare", "rps")}
    out["streams_gateway_over_litellm"] = ratio(g, lite)
    t1 = "ttft@1"
    out["added_ttft_p50_c1_ms"] = {s: _get(summary, t1, s, "added_ttft_p50_ms") for s in ("gateway", "bare", "litellm")}
    out["added_ttft_c1_gateway_over_bare"] = ratio(out["added_ttft_p50_c1_ms"]["gateway"],
                                                   out["added_ttft_p50_c1_ms"]["bare"])
    open_key = next((k for k in summary if k.startswith("open@")), None)
    if open_key:
        out["open_loop"] = {"point": open_key,
                            **{s: _get(summary, open_key, s, "added_p99_ms") for s in ("gateway", "bare", "litellm")}}
    out["gateway_cpu_ms_per_req_c32"] = _get(summary, p32, "gateway", "cpu_ms_per_req")
    out["bare_cpu_ms_per_req_c32"] = _get(summary, p32, "bare", "cpu_ms_per_req")
    # The target is per gateway (serving) process; with PostgreSQL `twoapi serve` also
    # runs the tenancy projection in one process beside its workers, in the tree's figure.
    out["gateway_rss_mb_max"] = max((row.get("main_rss_mb") or row["rss_mb"] for row in gateway_rows), default=None)
    out["gateway_tree_rss_mb_max"] = max((row["rss_mb"] for row in gateway_rows), default=None)
    base_rows = [row["gateway_base"] for row in summary.values() if "gateway_base" in row]
    if base_rows:
        out["gateway_vs_base"] = {
            "what": "the working tree (gateway) against an earlier commit (gateway_base), same run",
            **{key: {metric: {"gateway": _get(summary, key, "gateway", metric),
                              "base": _get(summary, key, "gateway_base", metric)}
                     for metric in ("rps", "added_p50_ms", "added_p99_ms", "cpu_ms_per_req", "added_ttft_p50_ms")
                     if _get(summary, key, "gateway_base", metric) is not None}
               for key in summary if "gateway_base" in summary[key]},
        }
    all_rows = [row["gateway_all"] for row in summary.values() if "gateway_all" in row]
    if all_rows:
        out["gateway_all"] = {
            "what": "twoapi serve as shipped, its whole process tree (before 9451ba4 the chDB analytics projection "
                    "ran in the serving process; since, in an analytics worker child beside it)",
            "added_p50_c1_ms": _get(summary, p1, "gateway_all", "added_p50_ms"),
            "rps_c32": _get(summary, p32, "gateway_all", "rps"),
            "rps_c32_over_gateway": ratio(_get(summary, p32, "gateway_all", "rps"), out["rps_c32"]["gateway"]),
            "cpu_ms_per_req_c32": _get(summary, p32, "gateway_all", "cpu_ms_per_req"),
            "rss_mb_max": max(row["rss_mb"] for row in all_rows),
            "serving_process_rss_mb_max": max((row.get("main_rss_mb") or 0) for row in all_rows),
            "serving_process_cpu_ms_per_req_c32": _get(summary, p32, "gateway_all", "main_cpu_ms_per_req"),
            "errors": sum(row["errors"] for row in all_rows),
        }
    return out


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured figure and whether it is met."""
    r = result["ratios"]
    stacks = result.get("stacks", {})
    rows: list[dict[str, Any]] = []

    def add(name: str, measured: Any, ok: bool | None) -> None:
        rows.append({"target": name, "measured": measured, "met": ok})

    g_add = r["added_p50_c1_ms"]["gateway"]
    add("added p50 at c=1 <= 1.5 ms", g_add, None if g_add is None else g_add <= 1.5)
    gb = r["added_p50_c1_gateway_over_bare"]
    add("added p50 at c=1 within 1.5x of bare", gb, None if gb is None else gb <= 1.5)
    lg = r["added_p50_c1_litellm_over_gateway"]
    add("added p50 at c=1 >= 15x better than LiteLLM", lg, None if lg is None else lg >= 15)
    g32 = r["rps_c32"]["gateway"]
    add("req/s at c=32 >= 600", g32, None if g32 is None else g32 >= 600)
    add("req/s at c=32 >= 60% of bare", r["rps_c32_gateway_over_bare"],
        None if r["rps_c32_gateway_over_bare"] is None else r["rps_c32_gateway_over_bare"] >= 0.6)
    add("req/s at c=32 >= 10x LiteLLM", r["rps_c32_gateway_over_litellm"],
        None if r["rps_c32_gateway_over_litellm"] is None else r["rps_c32_gateway_over_litellm"] >= 10)
    errors = r["errors_gateway_all_points"]
    add("zero errors through the gateway", errors, None if errors is None else errors == 0)
    if "open_loop" in r:
        p99 = r["open_loop"]["gateway"]
        add(f"open loop {r['open_loop']['point']}: added p99 <= 5 ms", p99, None if p99 is None else p99 <= 5)
    t = r["added_ttft_p50_c1_ms"]["gateway"]
    add("added TTFT p50 at c=1 <= 1.5 ms", t, None if t is None else t <= 1.5)
    s = r["streams_gateway_over_litellm"]
    add("streams/s >= 10x LiteLLM", s, None if s is None else s >= 10)
    rss = r["gateway_rss_mb_max"]
    add("gateway (serving) process RSS under load <= 150 MB", rss, None if not rss else rss <= 150)
    start = stacks.get("gateway", {}).get("startup_to_first_200_s")
    add("gateway start-up to first 200 <= 2 s", start, None if start is None else start <= 2)
    return rows
