"""The ledger on both stores: events round-trip, keys resolve by hash, the writer
commits many requests per transaction, whether they wait on a thread-safe future or on
an event loop."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from ledger.application import Ledger, hash_key
from ledger.events import Request
from ledger.trace import RequestTrace
from ledger.writer import LedgerUnavailable, LedgerWriter


@pytest.fixture
def ledger(tmp_path: Path, store_url: str | None):
    opened = Ledger.open(store_url, tmp_path)
    yield opened
    opened.close()


def trace_of(request_id: uuid.UUID, cost: str = "0.000001000") -> RequestTrace:
    trace = RequestTrace(request_id)
    trace.add(Request.Received, tenant="t", key_id="k", endpoint="chat.completions", model="openai/gpt-4o-mini",
              stream=False, body_bytes=10, body_sha256="00", messages=1)
    trace.add(Request.UsageMetered, provider="openai", model="openai/gpt-4o-mini", input_tokens=5,
              output_tokens=7, cached_tokens=0, source="provider", price_book="v1", cost=cost)
    trace.add(Request.Completed, status=200, latency_ms=1.25)
    return trace


def test_request_events_round_trip_with_exact_fields(ledger):
    trace = trace_of(uuid.uuid4(), cost="0.000123456")
    ledger.save(*trace.domain_events())
    events = ledger.event_dicts(trace.request_id)
    assert [e["event"] for e in events] == ["Received", "UsageMetered", "Completed"]
    assert [e["version"] for e in events] == [1, 2, 3]
    assert Decimal(events[1]["cost"]) == Decimal("0.000123456")
    assert events[2]["latency_ms"] == 1.25


def test_writer_commits_many_requests_in_few_transactions(ledger):
    writer = LedgerWriter(ledger)
    traces = [trace_of(uuid.uuid4()) for _ in range(300)]
    futures = [writer.submit(trace) for trace in traces]
    for future in futures:
        future.result(30)
    writer.close()
    assert writer.committed_events == 900
    assert writer.commits < 300
    assert all(len(ledger.event_dicts(t.request_id)) == 3 for t in traces[::50])


def test_writer_isolates_a_bad_request_from_the_rest_of_its_batch(ledger):
    writer = LedgerWriter(ledger)
    duplicate = trace_of(uuid.uuid4())
    ledger.save(*duplicate.domain_events())
    good = [trace_of(uuid.uuid4()) for _ in range(20)]
    futures = [writer.submit(t) for t in good[:10]] + [writer.submit(duplicate)] + [writer.submit(t) for t in good[10:]]
    writer.close()
    outcomes = [f.exception(10) for f in futures]
    assert isinstance(outcomes[10], LedgerUnavailable)
    assert [o for i, o in enumerate(outcomes) if i != 10] == [None] * 20


def test_commits_awaited_on_an_event_loop_share_transactions_and_a_bad_one_raises_alone(ledger):
    writer = LedgerWriter(ledger)
    duplicate = trace_of(uuid.uuid4())
    ledger.save(*duplicate.domain_events())
    good = [trace_of(uuid.uuid4()) for _ in range(200)]

    async def commit_all() -> list[BaseException | None]:
        async def one(trace: RequestTrace) -> BaseException | None:
            try:
                await writer.commit(trace)
            except LedgerUnavailable as error:
                return error
            return None

        abandoned = asyncio.ensure_future(writer.commit(trace_of(uuid.uuid4())))
        abandoned.cancel()  # a client gone before its commit: the others are still woken
        return await asyncio.gather(*(one(t) for t in good[:100]), one(duplicate), *(one(t) for t in good[100:]))

    outcomes = asyncio.run(commit_all())
    writer.close()
    assert isinstance(outcomes[100], LedgerUnavailable)
    assert [o for i, o in enumerate(outcomes) if i != 100] == [None] * 200
    assert writer.commits < 200
    assert all(len(ledger.event_dicts(t.request_id)) == 3 for t in good[::40])


def test_keys_resolve_by_hash_and_revocation_sticks(ledger):
    ledger.create_tenant("acme")
    ledger.add_credits("acme", Decimal("12.5"), reference="inv-1")
    issued = ledger.issue_key("acme", label="ci")
    assert issued.secret.startswith("2api_") and issued.prefix == issued.secret[:11]
    key = ledger.find_key(hash_key(issued.secret))
    assert key.tenant == "acme" and not key.revoked
    ledger.revoke_key(issued.key_id, reason="leaked")
    assert ledger.find_key(hash_key(issued.secret)).revoked
    assert ledger.find_key(hash_key("2api_never_issued")) is None


def test_a_tenant_name_is_taken_once(ledger):
    ledger.create_tenant("acme")
    with pytest.raises(ValueError):
        ledger.create_tenant("acme")


async def test_a_closed_writer_refuses_at_once_rather_than_leaving_a_request_waiting(ledger):
    writer = LedgerWriter(ledger)
    writer.close()
    trace = trace_of(uuid.uuid4())
    with pytest.raises(LedgerUnavailable):
        writer.submit(trace).result(5)
    with pytest.raises(LedgerUnavailable):
        await asyncio.wait_for(writer.commit(trace), 5)
    writer.commit_later(trace)  # logged as dropped
    writer.close()  # twice is harmless
    assert ledger.event_dicts(trace.request_id) == []
