"""A re-pricing run of hundreds of thousands of corrections is saved in one
transaction on PostgreSQL without hanging (a pipelined insert of tens of MB used to
wait forever: psycopg issue 685)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from ledger.application import Ledger
from ledger.events import RepricingRun


def test_a_run_of_many_corrections_is_saved_at_once_on_postgres(postgres_url, tmp_path: Path):
    ledger = Ledger.open(postgres_url, tmp_path)
    run = RepricingRun(run_id="large", price_book="v9", prices=None, window_from="2026-01-01T00:00:00+00:00",
                       window_to="2026-02-01T00:00:00+00:00", tenant=None)
    for _ in range(300):  # ~25 MB of events
        run.reprice(run_id="large", tenant="acme", key_id="k", model="openai/gpt-4o-mini", day="2026-01-02",
                    price_book="v9", corrections=[[f"{uuid.uuid4()}/5", "0.000123000", "0.000246000"]] * 2000,
                    old_cost="0.246000000", new_cost="0.492000000")
    run.finish(events=600_000, deltas={"acme": "73.800000000"})
    outcome: list[object] = []
    saver = threading.Thread(target=lambda: outcome.append(ledger.save(run)), daemon=True)
    saver.start()
    saver.join(120)
    assert not saver.is_alive(), "saving the run hung"
    stored = ledger.recorder.select_events(run.id, desc=True, limit=1)
    assert outcome and stored[0].originator_version == 302
    ledger.close()
