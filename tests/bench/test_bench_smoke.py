"""The benchmark harness itself, at toy sizes: it starts its stacks, measures, writes a
JSON report with the fields the README and the issue's targets rely on, and leaves no
process behind. No timing is asserted (this machine is shared and noisy); LiteLLM is
never installed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadgen import wrk_script
from bench.overhead import ratios, summarize
from bench.pyspy import analyse, parse_collapsed
from bench.soak import drift
from bench.stats import percentile

REPO = Path(__file__).resolve().parents[2]


def run_bench(*args: str, out: Path) -> dict:
    env = {**os.environ, "BENCH_INSTALL_WRK": "0"}  # use wrk if present, never apt-get from a test
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--tiny", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    reports = sorted(out.glob(f"{args[0]}-*.json"))
    assert len(reports) == 1, list(out.iterdir())
    return {"report": json.loads(reports[0].read_text()), "stdout": done.stdout}


@pytest.mark.usefixtures("postgres_available")
def test_overhead_report_has_every_stack_point_and_ratio(tmp_path: Path):
    ran = run_bench("overhead", out=tmp_path)
    report = ran["report"]
    assert report["scenario"] == "overhead" and report["mode"] == "tiny"
    assert {"date", "git", "machine", "placement", "load_generators", "stacks", "samples", "summary", "ratios",
            "targets"} <= report.keys()
    assert set(report["stacks"]) == {"direct", "bare", "gateway"}
    assert report["stacks"]["gateway"]["startup_to_first_200_s"] > 0
    assert set(report["summary"]) == {"plain@1", "stream@2", "ttft@1", "open@20"}
    for point, row in report["summary"].items():
        assert set(row) == {"direct", "bare", "gateway"}, point
        for stack, metrics in row.items():
            assert metrics["rps"] > 0 and metrics["errors"] == 0, (point, stack, metrics)
            assert {"p50_ms", "p90_ms", "p99_ms", "cpu_ms_per_req", "rss_mb"} <= metrics.keys()
            if stack != "direct":
                assert "added_p50_ms" in metrics and "added_p99_ms" in metrics
    assert "ttft_p50_ms" in report["summary"]["ttft@1"]["gateway"]
    assert "postgres_cpu_ms_per_req" in report["summary"]["plain@1"]["gateway"]
    assert report["ratios"]["added_p50_c1_ms"]["gateway"] is not None
    assert report["ratios"]["errors_gateway_all_points"] == 0
    assert {t["target"] for t in report["targets"]} >= {"req/s at c=32 >= 600", "zero errors through the gateway"}
    assert "| stack |" in ran["stdout"] and "Targets (issue 8)" in ran["stdout"]
    # The machine's own commit latency, with and without the flush to disk, beside the open loop.
    assert [p["synchronous_commit"] for p in report["commit_probe"]] == ["on", "off"]
    assert all(p["commits"] > 0 and p["latency_ms"]["p50"] > 0 for p in report["commit_probe"])
    assert "PostgreSQL commit latency" in ran["stdout"]
    # Every process the run started is gone.
    for info in report["stacks"].values():
        assert not Path(f"/proc/{info['pid']}").exists() or _is_zombie(info["pid"])


@pytest.mark.usefixtures("postgres_available")
def test_ledger_report_covers_both_stores(tmp_path: Path):
    report = run_bench("ledger", out=tmp_path)["report"]
    assert report["scenario"] == "ledger"
    assert set(report["summary"]) == {"postgres", "sqlite"}
    for store, by_window in report["summary"].items():
        assert set(by_window) == {"1", "16"}, store
        for metrics in by_window.values():
            assert metrics["events_per_s"] > 0 and metrics["failures"] == 0
            assert metrics["commit_wait_p99_ms"] is not None
    assert report["summary"]["postgres"]["1"]["postgres_cpu_us_per_event"] is not None
    lag = report["projection_lag"]
    assert lag["samples"] > 0 and lag["load"]["ok"] > 0 and lag["load"]["errors"] == 0
    assert lag["lag_ms"]["p99"] is not None and lag["position_at_end"] > 0
    # Realistic requests: 6 events plain, 7 streamed.
    sample = report["samples"][0]
    assert 6 * sample["requests"] <= sample["events"] <= 7 * sample["requests"]


@pytest.mark.usefixtures("postgres_available")
def test_soak_report_has_rss_series_windows_and_drift(tmp_path: Path):
    report = run_bench("soak", out=tmp_path)["report"]
    assert report["scenario"] == "soak"
    assert report["load"]["ok"] > 0 and report["load"]["errors"] == 0
    assert len(report["rss"]) >= 2 and all(s["rss_mb"] > 0 for s in report["rss"])
    assert len(report["windows"]) >= 2 and {"t_s", "ok", "p50_ms", "p99_ms"} <= report["windows"][0].keys()
    assert {"rss_growth", "rss_after_warmup_mb", "latency_drift", "targets"} <= report.keys()


def test_drift_compares_settled_windows_and_rss_after_warmup():
    rss = [{"t_s": t, "rss_mb": 100.0 + t / 600} for t in range(0, 600, 5)]
    windows = [{"t_s": t, "p50_ms": 2.0, "p99_ms": 10.0 if t < 300 else 20.0} for t in range(0, 600, 30)]
    out = drift(rss, windows, 600)
    assert out["rss_after_warmup_mb"] == 100.1 and out["rss_end_mb"] == rss[-1]["rss_mb"]
    assert out["latency_drift"]["p99_last_over_first"] == 2.0
    assert out["targets"][0]["met"] is True  # under 1% growth after warm-up


def test_profile_analysis_splits_threads_packages_and_functions():
    raw = (
        "thread (1): MainThread;main (gateway/cli.py:10);chat (gateway/app.py:74);post (aiohttp/client.py:5) 30\n"
        "thread (2): ledger-writer;_run (ledger/writer.py:77);dump (psycopg/types/array.py:195) 10\n"
    )
    out = analyse(parse_collapsed(raw))
    assert out["samples"] == 40
    assert out["threads"][0] == {"name": "thread (1): MainThread", "share": 0.75, "samples": 30}
    assert out["self_by_package"][0]["name"] == "aiohttp"
    assert {"name": "gateway", "share": 0.75, "samples": 30} in out["inclusive_by_package"]
    assert out["self_top"][1]["name"] == "dump (psycopg/types/array.py)"


def test_unmeasured_scenarios_say_what_they_wait_for():
    from bench.__main__ import STUBS

    for scenario, issue in STUBS.items():
        done = subprocess.run([sys.executable, "-m", "bench", scenario], cwd=REPO, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2 and issue in done.stderr
    # Scenario 5 (replay) is measured since issue 7 landed: it has its own options.
    done = subprocess.run([sys.executable, "-m", "bench", "replay", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "--requests" in done.stdout


def test_wrk_script_quotes_bodies_and_headers():
    script = wrk_script(b'{"a": "x\\"y]]"}', {"Authorization": "Bearer k"})
    assert 'wrk.method = "POST"' in script
    assert '"{\\034a\\034: \\034x\\092\\034y]]\\034}"' in script
    assert 'wrk.headers["Authorization"] = "Bearer k"' in script


def test_summary_medians_and_added_latency():
    def sample(stack: str, run: int, p50: float, rps: float) -> dict:
        return {"stack": stack, "point": "plain@1", "run": run, "rps": rps, "errors": 0, "requests": 10,
                "cpu_ms_per_req": 1.0, "cpu_util": 0.5, "sim_cpu_util": 0.1, "rss_mb": 50.0,
                "latency_ms": {"p50": p50, "p90": p50, "p99": p50}}

    samples = [sample("direct", r, p, 1000) for r, p in enumerate((0.1, 0.2, 0.3))]
    samples += [sample("gateway", r, p, 500) for r, p in enumerate((1.2, 1.0, 5.0))]
    summary = summarize(samples, ["direct", "gateway"])
    assert summary["plain@1"]["gateway"]["p50_ms"] == 1.2
    assert summary["plain@1"]["gateway"]["added_p50_ms"] == 1.0
    assert ratios(summary)["added_p50_c1_ms"]["gateway"] == 1.0
    assert percentile([1, 2, 3, 4], 50) == 2.5


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
