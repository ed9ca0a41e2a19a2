"""The tenancy projection on PostgreSQL pulls at most every PULL_INTERVAL_S: commits in
quick succession are projected together, in fewer view transactions than commits,
and nothing is lost or applied twice."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from ledger.application import Ledger
from ledger.projections import runner
from ledger.projections.runner import PacedPostgresSubscription, ProjectionWorker, close_view, open_view


def test_commits_in_quick_succession_share_view_transactions(tmp_path: Path, postgres_url: str):
    ledger = Ledger.open(postgres_url, tmp_path)
    view = open_view(postgres_url, tmp_path)
    worker = ProjectionWorker(postgres_url, tmp_path, seal_interval_s=None).start()
    try:
        ledger.create_tenant("acme")
        assert runner.wait_caught_up(ledger, view, timeout=30)
        projection = _projection(worker)
        batches_before = projection.batches
        commits = 60
        for _ in range(commits):  # one transaction each, ~1 ms apart
            ledger.add_credits("acme", Decimal("0.01"), reference="pacing")
        assert runner.wait_caught_up(ledger, view, timeout=30)
        assert isinstance(worker._runner._subscription.subscription, PacedPostgresSubscription)  # type: ignore[union-attr]
        flushes = projection.batches - batches_before
        assert 1 <= flushes < commits / 3, flushes
        assert Decimal(view.tenant("acme", time.strftime("%Y-%m"))["balance"]) == Decimal("0.60")
    finally:
        worker.stop()
        close_view(view)
        ledger.close()


def _projection(worker: ProjectionWorker):
    deadline = time.monotonic() + 30
    while worker._runner is None or not worker.leading:
        assert time.monotonic() < deadline, "the projection worker did not start"
        time.sleep(0.05)
    return worker._runner.projection
