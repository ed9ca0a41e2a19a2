"""PostgreSQL going away under load: the gateway refuses to serve unbilled traffic
(503 ledger_unavailable), recovers by itself, and the ledger has no gaps or doubles."""

from __future__ import annotations

import threading
import time
from collections import Counter
from decimal import Decimal

import openai
import pytest

from ledger.application import Ledger
from ledger.ids import parse_request_id
from tests.faults.private_postgres import PrivatePostgres


@pytest.fixture
def private_postgres():
    server = PrivatePostgres()
    server.start()
    yield server
    server.remove()


def test_a_database_outage_answers_503_then_recovers_without_gaps_or_doubles(private_postgres, make_gateway, sim):
    gateway = make_gateway(database_url=private_postgres.url)
    # The demo key lives in the SQLite ledger the factory seeded; issue one here.
    ledger = Ledger.open(private_postgres.url, gateway.settings.data_dir)
    ledger.create_tenant("outage")
    ledger.add_credits("outage", Decimal("100"), reference="test")
    key = ledger.issue_key("outage").secret
    ledger.close()

    outcomes: list[tuple[float, int, str | None]] = []  # (time, status, request id)
    stop = threading.Event()

    def client_loop() -> None:
        client = openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0, timeout=30)
        while not stop.is_set():
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
                raw.parse()
                outcomes.append((time.monotonic(), 200, raw.headers["x-request-id"]))
            except openai.APIStatusError as error:
                outcomes.append((time.monotonic(), error.status_code, error.code))
            except openai.APIConnectionError:
                outcomes.append((time.monotonic(), 0, None))

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    private_postgres.stop()
    down_at = time.monotonic()
    # Long enough that the window below (from 2.5 s in) outlasts a refused request's
    # wait for a connection (2 s): every client ends at least one request inside it.
    time.sleep(6.0)
    private_postgres.start()
    up_at = time.monotonic()
    time.sleep(4.0)
    stop.set()
    for thread in threads:
        thread.join(40)

    statuses = Counter(status for _, status, _ in outcomes)
    assert 500 not in statuses and 0 not in statuses
    during = [(status, code) for at, status, code in outcomes if down_at + 2.5 < at < up_at]
    assert during and all(status == 503 and code == "ledger_unavailable" for status, code in during)
    after = [status for at, status, _ in outcomes if at > up_at + 2]
    assert after and all(status == 200 for status in after), Counter(after)

    served = [request_id for _, status, request_id in outcomes if status == 200]
    ledger = Ledger.open(private_postgres.url, gateway.settings.data_dir)
    try:
        for request_id in served:
            names = [e["event"] for e in ledger.event_dicts(parse_request_id(request_id))]
            assert names.count("UsageMetered") == 1 and names[-1] == "Completed", names
    finally:
        ledger.close()
