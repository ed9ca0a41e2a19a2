"""The leading projection worker seals the ledger in a thread of its own (a seal reads
and hashes every event since the last one, which in the projection's loop held up its
pulls): new events are sealed every interval while the projection keeps following, and
the sealer stops with the worker. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

from ledger.application import Ledger
from ledger.audit.seal import seals
from ledger.projections import runner
from ledger.projections.runner import ProjectionWorker, close_view, open_view


def sealed_up_to(ledger: Ledger, position: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(seal.last >= position for seal in seals(ledger)):
            return True
        time.sleep(0.05)
    return False


def sealers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "ledger-sealer"]


def test_the_leading_worker_seals_new_events_in_a_thread_of_its_own(tmp_path: Path, store_url: str | None):
    ledger = Ledger.open(store_url, tmp_path)
    view = open_view(store_url, tmp_path)
    worker = ProjectionWorker(store_url, tmp_path, seal_interval_s=0.2).start()
    try:
        ledger.create_tenant("acme")
        assert sealed_up_to(ledger, ledger.recorder.max_notification_id())
        assert len(sealers()) == 1 and worker.leading
        for _ in range(5):  # more events: sealed by a later round, and projected meanwhile
            ledger.add_credits("acme", Decimal("1"), reference="sealer")
        head = ledger.recorder.max_notification_id()
        assert sealed_up_to(ledger, head)
        assert runner.wait_caught_up(ledger, view, timeout=30)
        assert Decimal(view.tenant("acme", time.strftime("%Y-%m"))["balance"]) == Decimal("5")
        assert worker.sealed >= 3
    finally:
        worker.stop()
        close_view(view)
        ledger.close()
    assert sealers() == []  # it stopped with the worker
