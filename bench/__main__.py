"""`python -m bench <scenario>`: 2api's benchmarks against its peers (issue 8).

Run from the repository root with the project's venv. Each run writes one JSON file to
bench/results/ and prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import procs, report

SCENARIOS = {
    "overhead": "1+2. direct vs bare pass-through vs 2api (gateway: analytics off; gateway_all: as shipped) "
                "vs LiteLLM: req/s, p50/p90/p99, added latency, CPU/request, "
                "RSS, streaming (streams/s, TTFT), open loop at 200 req/s",
    "peer": "2. same run as `overhead` (the peers are always measured side by side with 2api)",
    "ledger": "3. events/s the batched writer commits to PostgreSQL and SQLite; balance projection lag behind the "
              "gateway at a steady 300 req/s (--rate)",
    "analytics": "4. dashboard queries over 10M rows on chDB (bench/analytics_queries.py; its options: --rows, "
                 "--runs, --keep DIR)",
    "replay": "5. finance audit over 1M usage events on PostgreSQL: seal, re-pricing plan and apply (usage "
              "events/s), verify, parquet export, projection catch-up (bench/replay.py; its options: "
              "python -m bench replay --help)",
    "soak": "6. the gateway at a fixed rate (--rate, default 200 req/s, half streaming) for --minutes (default 10; "
            "--quick 1): RSS over time and latency drift",
    "profile": "py-spy on the gateway under wrk (--concurrency, default 32; --stream): CPU by thread, package, "
               "function",
    "all": "1-3 in sequence (about 9 minutes; --quick about 2)",
}
STUBS: dict[str, str] = {}


def build_parser() -> argparse.ArgumentParser:
    epilog = "scenarios:\n" + "\n".join(f"  {name:<10} {text}" for name, text in SCENARIOS.items())
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=list(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="about a minute per scenario: 1 run, short points")
    parser.add_argument("--runs", type=int, help="runs per point (median reported); default 3, --quick 1")
    parser.add_argument("--duration", type=float, help="seconds per closed-loop sample (default 3)")
    parser.add_argument("--stacks", default=None,
                        help="comma-separated subset of direct,bare,gateway,gateway_all,litellm (default: all)")
    parser.add_argument("--baseline", metavar="REV", default=None,
                        help="overhead, ledger: also measure the code of commit REV (e.g. HEAD) side by side with the "
                             "working tree (stack gateway_base; ledger rows `store@REV`)")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer")
    parser.add_argument("--concurrency", default=None, help="plain closed-loop concurrencies, e.g. 1,32,128")
    parser.add_argument("--rate", type=float, default=None, help="open-loop rate, req/s (default 200)")
    parser.add_argument("--windows", default=None, help="ledger: requests in flight, e.g. 1,64,1000")
    parser.add_argument("--stores", default="postgres,sqlite", help="ledger: postgres,sqlite")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the gateway process (repeatable), e.g. TWOAPI_ANALYTICS=owner")
    parser.add_argument("--code", metavar="REV", default=None,
                        help="overhead: run the gateway stack from commit REV instead of the working tree (with "
                             "--baseline: two commits side by side, whatever else the working tree holds)")
    parser.add_argument("--base-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for gateway_base only (repeatable); with --baseline . the same code "
                             "is compared under two settings")
    parser.add_argument("--no-lag", action="store_true", help="ledger: skip the projection lag measurement")
    parser.add_argument("--minutes", type=float, default=None, help="soak: length (default 10, --quick 1)")
    parser.add_argument("--stream", action="store_true", help="profile: streaming requests")
    parser.add_argument("--all-threads", action="store_true",
                        help="profile: sample every non-idle thread, not only the one holding the GIL")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the harness's own smoke test
    parser.add_argument("--out", type=Path, default=report.RESULTS_DIR, help="results directory")
    parser.add_argument("--note", default="", help="free text stored with the run (what changed, why)")
    return parser


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def overhead_config(args: argparse.Namespace) -> Any:
    from bench.overhead import ALL_STACKS, OverheadConfig

    config = OverheadConfig.tiny() if args.tiny else OverheadConfig.quick() if args.quick else OverheadConfig()
    if args.runs:
        config.runs = args.runs
    if args.duration:
        config.duration_s = args.duration
    if args.stacks:
        config.stacks = [s.strip() for s in args.stacks.split(",") if s.strip() in ALL_STACKS]
    if args.no_litellm and "litellm" in config.stacks:
        config.stacks.remove("litellm")
    if args.concurrency:
        config.plain_concurrency = _ints(args.concurrency)
    if args.rate is not None:
        config.open_rate = args.rate
    config.gateway_env.update(gateway_env(args))
    config.baseline = args.baseline
    config.base_env.update(gateway_env(args, "base_env"))
    config.code = args.code
    return config


def gateway_env(args: argparse.Namespace, option: str = "gateway_env") -> dict[str, str]:
    env = {}
    for item in getattr(args, option):
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--gateway-env wants NAME=VALUE, not {item!r}")
        env[name] = value
    return env


def envelope(scenario: str, args: argparse.Namespace, started: float) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "git": report.git_revision(),
        "machine": procs.machine_note(),
        "mode": "tiny" if args.tiny else "quick" if args.quick else "full",
        "note": args.note,
    }


def busy_warning(log: Any = sys.stderr) -> None:
    load = os.getloadavg()[0]
    if load > 0.5 * procs.cpu_count():
        print(f"bench: warning: load average {load:.1f} on {procs.cpu_count()} CPUs before the run; other work on "
              "this machine will show in the figures (each sample records machine_busy_cpus)", file=log, flush=True)


def run_overhead(args: argparse.Namespace) -> dict[str, Any]:
    from bench import commit_probe
    from bench.overhead import run_overhead as run
    from bench.overhead import targets

    started = time.time()
    busy_warning()
    result = envelope("overhead", args, started)
    run_dir = args.out / "logs" / time.strftime("overhead-%Y%m%d-%H%M%S")
    result.update(run(overhead_config(args), run_dir))
    # What the open loop's tail stands on: the disk's commit latency, measured alone.
    result["commit_probe"] = commit_probe.probes(seconds=0.5 if args.tiny else 3 if args.quick else 10)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = targets(result)
    result["logs"] = str(run_dir)
    result["wall_s"] = round(time.time() - started, 1)
    path = report.write_json(result, args.out, "overhead")
    print(report.overhead_markdown(result))
    print(commit_probe.markdown(result["commit_probe"]))
    print(f"\n(JSON: {path}; process logs: {run_dir}; {result['wall_s']} s)")
    return result


def run_ledger(args: argparse.Namespace) -> dict[str, Any]:
    from bench.ledger_load import run_ledger as run

    started = time.time()
    if args.windows:
        windows = _ints(args.windows)
    elif args.tiny:
        windows = [1, 16]
    elif args.quick:
        windows = [1, 1000]
    else:
        windows = [1, 64, 1000]
    duration = args.duration or (0.5 if args.tiny else 2.0 if args.quick else 4.0)
    runs = args.runs or (1 if args.tiny or args.quick else 3)
    stores = [s.strip() for s in args.stores.split(",") if s.strip() in ("postgres", "sqlite")]
    lag_rate = args.rate or (20.0 if args.tiny else 300.0)
    lag_seconds = 2.0 if args.tiny else 8.0 if args.quick else 20.0
    run_dir = args.out / "logs" / time.strftime("ledger-%Y%m%d-%H%M%S")
    result = envelope("ledger", args, started)
    lag = None if args.no_lag else (lag_rate, lag_seconds, run_dir)
    result.update(run(windows, duration, runs, stores, lag=lag, gateway_env=gateway_env(args),
                      baseline=args.baseline, code=args.code))
    result["wall_s"] = round(time.time() - started, 1)
    path = report.write_json(result, args.out, "ledger")
    print(report.ledger_markdown(result))
    print(f"\n(JSON: {path}; {result['wall_s']} s)")
    return result


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    from bench.soak import run_soak as run

    started = time.time()
    minutes = args.minutes or (0.1 if args.tiny else 1.0 if args.quick else 10.0)
    rate = args.rate or (20.0 if args.tiny else 200.0)
    window = 2.0 if args.tiny else 5.0 if args.quick else 30.0
    run_dir = args.out / "logs" / time.strftime("soak-%Y%m%d-%H%M%S")
    result = envelope("soak", args, started)
    result.update(run(minutes, rate, window, run_dir, gateway_env(args)))
    result["wall_s"] = round(time.time() - started, 1)
    path = report.write_json(result, args.out, "soak")
    print(report.soak_markdown(result))
    print(f"\n(JSON: {path}; process logs: {run_dir}; {result['wall_s']} s)")
    return result


def run_profile(args: argparse.Namespace) -> dict[str, Any]:
    from bench.pyspy import profile_markdown
    from bench.pyspy import run_profile as run

    started = time.time()
    concurrency = _ints(args.concurrency)[0] if args.concurrency else 32
    duration = args.duration or (3.0 if args.tiny else 5.0 if args.quick else 15.0)
    run_dir = args.out / "logs" / time.strftime("profile-%Y%m%d-%H%M%S")
    result = envelope("profile", args, started)
    result.update(run(concurrency, duration, args.stream, 250, run_dir, gil=not args.all_threads,
                      gateway_env=gateway_env(args)))
    path = report.write_json(result, args.out, "profile")
    print(profile_markdown(result))
    print(f"\n(JSON: {path}; raw stacks: {result['raw_stacks']})")
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["analytics"]:  # scenario 4 has its own module and options
        from bench.analytics_queries import main as analytics_main

        sys.argv = ["python -m bench analytics", *argv[1:]]
        return analytics_main()
    if argv[:1] == ["replay"]:  # scenario 5 too
        from bench.replay import main as replay_main

        return replay_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.scenario in STUBS:
        print(f"bench {args.scenario}: not measured yet, needs {STUBS[args.scenario]}. "
              f"({SCENARIOS[args.scenario]})", file=sys.stderr)
        return 2
    if args.scenario in ("overhead", "peer"):
        run_overhead(args)
    elif args.scenario == "ledger":
        run_ledger(args)
    elif args.scenario == "soak":
        run_soak(args)
    elif args.scenario == "profile":
        run_profile(args)
    elif args.scenario == "all":
        run_overhead(args)
        print()
        run_ledger(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
