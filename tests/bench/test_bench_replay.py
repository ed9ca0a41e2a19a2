"""Scenario 5 (`python -m bench replay`) at a toy size: it builds its ledger in a schema
of its own, runs every phase on it, writes the JSON the README's table comes from, and
drops the schema. No timing is asserted (this machine is shared and noisy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support import POSTGRES_BASE_URL

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("postgres_available")
def test_replay_measures_every_phase_on_one_ledger_and_drops_it(tmp_path: Path):
    env = {**os.environ, "BENCH_DATABASE_URL": POSTGRES_BASE_URL}
    done = subprocess.run([sys.executable, "-m", "bench", "replay", "--smoke", "--requests", "600",
                           "--out", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    reports = list(tmp_path.glob("replay-*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["scenario"] == "replay" and report["mode"] == "tiny"
    phases = report["phases"]
    assert set(phases) == {"load", "vacuum", "idle", "seal", "plan", "apply", "verify", "projection",
                           "verify_with_projection", "export"}
    for name, figures in phases.items():
        assert figures["wall_s"] >= 0 and figures["peak_rss_mb"] > 0, name
    load = phases["load"]
    assert load["usage_events"] == 600 and load["requests"] > 600  # a few failed requests come on top
    assert load["stored_events"] > load["events"] > 6 * 600  # tenants, credits and keys before them
    assert phases["seal"]["sealed"] >= load["stored_events"]  # and the seal aggregate's first events
    plan = phases["plan"]
    assert plan["usage_events"] == 600 and 0 < plan["changed"] < 600 and plan["unattributed"] == 0
    assert plan["usage_events_per_s"] > 0
    assert phases["apply"]["corrected"] == plan["changed"] and not phases["apply"]["already"]
    assert phases["apply"]["events_recorded"] > 1  # the run's events and the balance adjustments
    for name in ("verify", "verify_with_projection"):
        verified = phases[name]
        assert verified["ok"] and verified["findings"] == 0, verified["first_findings"]
        assert verified["usage_events"] == 600 and verified["sealed"] == phases["seal"]["sealed"]
        assert verified["events"] == load["stored_events"] + phases["seal"]["seals"] + 1 + \
            phases["apply"]["events_recorded"]  # + the seals and their aggregate's creation
    assert "projection" in phases["verify_with_projection"]["checked"]
    assert phases["projection"]["caught_up"]
    export = phases["export"]
    assert export["lines"] == 600 + plan["changed"] + 5 + phases["apply"]["tenants_adjusted"]
    assert "| re-pricing plan (dry run) |" in done.stdout
    with psycopg.connect(POSTGRES_BASE_URL) as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (report["schema"],)).fetchone()
    assert row is not None and row[0] == 0
