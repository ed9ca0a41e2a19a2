"""Reports: one JSON file per run in bench/results/, and markdown tables on stdout."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def git_revision() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def write_json(result: dict[str, Any], out_dir: Path, scenario: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{scenario}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return None
    return round(a / b, 2)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    rule = "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(_f(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def overhead_markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    out: list[str] = []
    plain = [k for k in summary if k.startswith("plain@")]
    if plain:
        rows = []
        for key in plain:
            for stack, m in summary[key].items():
                rows.append([key.split("@")[1], stack, m["rps"], m["p50_ms"], m["p90_ms"], m["p99_ms"],
                             m.get("added_p50_ms"), m.get("added_p99_ms"), m["cpu_ms_per_req"], m["rss_mb"],
                             m["errors"]])
        out.append("Plain chat completion, closed loop (wrk), medians of runs:\n")
        out.append(_table(["c", "stack", "req/s", "p50 ms", "p90 ms", "p99 ms", "added p50", "added p99",
                           "CPU ms/req", "RSS MB", "errors"], rows))
    streams = [k for k in summary if k.startswith("stream@")]
    if streams:
        rows = []
        for key in streams:
            for stack, m in summary[key].items():
                rows.append([key.split("@")[1], stack, m["rps"], m["p50_ms"], m["p99_ms"], m.get("added_p50_ms"),
                             m["cpu_ms_per_req"], m["errors"]])
        out.append("\nStreaming, closed loop (wrk), total time per stream:\n")
        out.append(_table(["c", "stack", "streams/s", "p50 ms", "p99 ms", "added p50", "CPU ms/stream", "errors"],
                          rows))
    ttft = [k for k in summary if k.startswith("ttft@")]
    if ttft:
        rows = []
        for key in ttft:
            for stack, m in summary[key].items():
                rows.append([key.split("@")[1], stack, m["rps"], m.get("ttft_p50_ms"), m.get("ttft_p99_ms"),
                             m.get("added_ttft_p50_ms"), m["p50_ms"], m.get("added_p50_ms"), m["errors"]])
        out.append("\nStreaming, time to first token (aiohttp generator):\n")
        out.append(_table(["c", "stack", "streams/s", "TTFT p50", "TTFT p99", "added TTFT p50", "total p50",
                           "added total p50", "errors"], rows))
    opened = [k for k in summary if k.startswith("open@")]
    if opened:
        rows = []
        for key in opened:
            for stack, m in summary[key].items():
                rows.append([key.split("@")[1], stack, m["rps"], m["p50_ms"], m["p90_ms"], m["p99_ms"],
                             m.get("added_p50_ms"), m.get("added_p99_ms"), m["cpu_util"], m["errors"]])
        out.append("\nOpen loop at a fixed rate (aiohttp generator, latency from the scheduled send time):\n")
        out.append(_table(["req/s asked", "stack", "req/s done", "p50 ms", "p90 ms", "p99 ms", "added p50",
                           "added p99", "CPU util", "errors"], rows))
    for skipped, reason in result.get("skipped", {}).items():
        out.append(f"\n(skipped {skipped}: {reason})")
    r = result["ratios"]
    out.append("\nRatios (same run, medians):\n")
    out.append(f"- added p50 at c=1, ms: gateway {_f(r['added_p50_c1_ms']['gateway'], 3)}, "
               f"bare {_f(r['added_p50_c1_ms']['bare'], 3)}, LiteLLM {_f(r['added_p50_c1_ms']['litellm'], 3)}; "
               f"gateway/bare {_f(r['added_p50_c1_gateway_over_bare'])}x, "
               f"LiteLLM/gateway {_f(r['added_p50_c1_litellm_over_gateway'])}x")
    out.append(f"- req/s at c=32: gateway/bare {_f(r['rps_c32_gateway_over_bare'])}, "
               f"gateway/LiteLLM {_f(r['rps_c32_gateway_over_litellm'])}x")
    out.append(f"- streams/s ({r['streams_per_s']['point']}): gateway/LiteLLM {_f(r['streams_gateway_over_litellm'])}x")
    ttft = ", ".join(f"{k} {_f(v, 3)}" for k, v in r["added_ttft_p50_c1_ms"].items())
    out.append(f"- added TTFT p50 at c=1, ms: {ttft}")
    if "open_loop" in r:
        ol = r["open_loop"]
        out.append(f"- {ol['point']} added p99, ms: gateway {_f(ol['gateway'], 3)}, bare {_f(ol['bare'], 3)}, "
                   f"LiteLLM {_f(ol['litellm'], 3)}")
    if "gateway_vs_base" in r:
        rows = []
        for key, metrics in r["gateway_vs_base"].items():
            if key == "what":
                continue
            for metric, pair in metrics.items():
                rows.append([key, metric, pair["gateway"], pair["base"], _ratio(pair["gateway"], pair["base"])])
        out.append("\nWorking tree (gateway) vs the baseline commit (gateway_base), same run, medians:\n")
        out.append(_table(["point", "figure", "gateway", "gateway_base", "gateway / base"], rows))
    if "gateway_all" in r:
        ga = r["gateway_all"]
        out.append(f"- gateway_all ({ga['what']}): added p50 at c=1 {_f(ga['added_p50_c1_ms'], 3)} ms, "
                   f"{_f(ga['rps_c32'])} req/s at c=32 ({_f(ga['rps_c32_over_gateway'])}x gateway), "
                   f"CPU {_f(ga['cpu_ms_per_req_c32'], 3)} ms/req, RSS max {_f(ga['rss_mb_max'])} MB; its serving "
                   f"process alone: CPU {_f(ga.get('serving_process_cpu_ms_per_req_c32'), 3)} ms/req, "
                   f"RSS {_f(ga.get('serving_process_rss_mb_max'))} MB")
    if r.get("gateway_tree_rss_mb_max") != r.get("gateway_rss_mb_max"):
        out.append(f"- gateway RSS max, MB: serving process {_f(r.get('gateway_rss_mb_max'))}, with the projection "
                   f"process beside it {_f(r.get('gateway_tree_rss_mb_max'))}")
    out.append(f"- CPU per request at c=32, ms: gateway {_f(r['gateway_cpu_ms_per_req_c32'], 3)}, "
               f"bare {_f(r['bare_cpu_ms_per_req_c32'], 3)}")
    if result.get("targets"):
        out.append("\nTargets (issue 8):\n")
        out.append(_table(["target", "measured", "met"],
                          [[t["target"], t["measured"], t["met"]] for t in result["targets"]]))
    others = [m.get("other_cpus") or 0 for row in summary.values() for m in row.values()]
    if others:
        out.append(f"\nOther tenants' CPU during the samples (of {result['machine']['cpus']} CPUs): median "
                   f"{sorted(others)[len(others) // 2]:.2f}, max {max(others):.2f}")
    out.append("\nPlacement: " + "; ".join(f"{k}: {v}" for k, v in result["placement"].items()))
    for name, info in result.get("stacks", {}).items():
        out.append(f"- {name}: {info.get('what')}; CPUs {info.get('cpus')}; "
                   f"start-up to first 200 {_f(info.get('startup_to_first_200_s'))} s")
    return "\n".join(out)


def ledger_markdown(result: dict[str, Any]) -> str:
    rows = []
    for store, by_window in result["summary"].items():
        for window, m in by_window.items():
            rows.append([store, int(window), m["events_per_s"], m["requests_per_s"], m["mean_requests_per_commit"],
                         m["commit_wait_p50_ms"], m["commit_wait_p99_ms"], m["client_cpu_us_per_event"],
                         m["postgres_cpu_us_per_event"], m["failures"]])
    out = ["Ledger writer (the gateway's: on the event loop for PostgreSQL, a thread for SQLite; 6.5 events/request),"
           " medians of runs:\n",
           _table(["store", "in flight", "events/s", "requests/s", "requests/commit", "wait p50 ms", "wait p99 ms",
                   "client CPU us/event", "PG CPU us/event", "failures"], rows)]
    lag = result.get("projection_lag")
    if lag:
        out.append(f"\nBalance projection lag behind the gateway at {lag['rate']:g} req/s for {lag['duration_s']:g} s "
                   f"({lag['load']['rps']} req/s done, {lag['load']['errors']} errors), sampled every "
                   f"{lag['sample_every_s'] * 1000:g} ms ({lag['samples']} samples): "
                   f"p50 {_f(lag['lag_ms']['p50'])} ms, "
                   f"p90 {_f(lag['lag_ms']['p90'])} ms, p99 {_f(lag['lag_ms']['p99'])} ms, max "
                   f"{_f(lag['lag_ms']['max'])} ms; caught up in {_f((lag['caught_up_share'] or 0) * 100, 0)}% "
                   f"of samples; at most {lag['pending_events_max']} events pending")
    out.append("\nTargets (issue 8):\n")
    out.append(_table(["target", "measured", "met"],
                      [[t["target"], t["measured"], t.get("note") or t["met"]] for t in result["targets"]]))
    return "\n".join(out)


def soak_markdown(result: dict[str, Any]) -> str:
    cfg, load, drift = result["config"], result["load"], result["latency_drift"]
    out = [f"Soak: {cfg['minutes']:g} min at {cfg['rate']:g} req/s (half streaming) through the gateway: "
           f"{load['ok']:,} ok, {load['errors']} errors, p50 {_f(load['latency_ms']['p50'])} ms, "
           f"p99 {_f(load['latency_ms']['p99'])} ms\n"]
    out.append(_table(["window from s", "ok", "errors", "p50 ms", "p99 ms", "max ms"],
                      [[w["t_s"], w["ok"], w["errors"], w["p50_ms"], w["p99_ms"], w["max_ms"]]
                       for w in result["windows"]]))
    out.append(f"\nRSS (the tree): {_f(result['rss_after_warmup_mb'])} MB after warm-up, {_f(result['rss_end_mb'])} "
               f"MB at the end, max {_f(result['rss_max_mb'])} MB; growth {_f(result['rss_growth'], 4)}; the serving "
               f"process at most {_f(result.get('serving_process_rss_max_mb'))} MB")
    out.append(f"Latency drift (median of the first vs last windows after warm-up): p50 {_f(drift['p50_first_ms'])}"
               f" -> {_f(drift['p50_last_ms'])} ms, p99 {_f(drift['p99_first_ms'])} -> {_f(drift['p99_last_ms'])} ms")
    out.append("\nTargets (issue 8):\n")
    out.append(_table(["target", "measured", "met"], [[t["target"], t["measured"], t["met"]]
                                                       for t in result["targets"]]))
    return "\n".join(out)
