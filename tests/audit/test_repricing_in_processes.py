"""Re-pricing in worker processes (ledger/repricing_pool.py) makes the plan one process
makes, and the scan's page reader gives the rows `rows()` gives, with text ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.price_list import base_price_book
from ledger import repricing_pool
from ledger.application import Ledger
from ledger.audit.scan import pages, rows, topics
from ledger.events import Request
from ledger.pricing import PriceBook
from ledger.repricing import USAGE_TOPICS, plan
from ledger.trace import RequestTrace

START = datetime(2026, 3, 1, tzinfo=UTC)
MODELS = ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "no-such/model")


def write_usage(ledger: Ledger, requests: int) -> list[tuple[str, str]]:
    """`requests` requests of two tenants, an hour apart, three or four events each (a
    Received, a Routed for every third, a UsageMetered, a Completed), so that ranges of
    positions cut some requests between their Received and their usage; returns each
    request's (Received id, usage id) as event ids."""
    book = base_price_book()
    written = []
    for i in range(requests):
        trace = RequestTrace(uuid.uuid4())
        at = (START + timedelta(hours=i)).timestamp()
        model = MODELS[i % len(MODELS)]
        tenant = ("acme", "beta")[i % 2]
        trace.entries.append((Request.Received, at, {
            "tenant": tenant, "key_id": f"{tenant}-key-{i % 3}", "endpoint": "chat.completions", "model": model,
            "stream": False, "body_bytes": 100, "body_sha256": "0" * 64, "messages": 1}))
        if i % 3 == 0:
            trace.entries.append((Request.Routed, at + 0.001, {"strategy": "explicit", "candidates": [],
                                                              "chain": [model], "reason": "explicit model"}))
        price = book.prices.get(model)
        cost = price.cost(1000 + i, 200 + i, 0) if price else book.prices[MODELS[0]].cost(1000, 200, 0)
        trace.entries.append((Request.UsageMetered, at + 0.5, {
            "provider": model.split("/")[0], "model": model, "input_tokens": 1000 + i, "output_tokens": 200 + i,
            "cached_tokens": 0, "source": "provider", "price_book": book.version, "cost": format(cost, "f")}))
        trace.entries.append((Request.Completed, at + 0.6, {"status": 200, "latency_ms": 600.0}))
        events = trace.domain_events()
        ledger.recorder.insert_events([ledger.mapper.to_stored_event(e) for e in events])
        written.append((f"{events[0].originator_id}/1", f"{events[0].originator_id}/{events[-2].originator_version}"))
    return written


def dearer(book: PriceBook) -> PriceBook:
    return PriceBook.from_table({model: {"input": str(p.input * 2), "output": str(p.output),
                                         "cached_input": str(p.cached_input)}
                                 for model, p in book.prices.items() if model != MODELS[1]})


def outcome(result: Any) -> tuple[dict[str, Any], dict[Any, list[list[str]]]]:
    return result.report(), dict(result.corrections)


@pytest.fixture
def postgres_ledger(postgres_url: str, tmp_path: Path) -> Any:
    ledger = Ledger.open(postgres_url, tmp_path)
    yield ledger
    ledger.close()


@pytest.mark.parametrize(("tenant", "hours"), [(None, (0, 10_000)), ("acme", (7, 50))])
def test_workers_over_cut_ranges_make_the_plan_one_process_makes(postgres_ledger, monkeypatch, tenant, hours):
    written = write_usage(postgres_ledger, 60)
    head = postgres_ledger.recorder.max_notification_id()
    monkeypatch.setattr(repricing_pool, "POSITIONS_PER_RANGE", 5)
    bounds = repricing_pool.ranges(head, 2)
    position = {r.event_id: r.position for r in rows(postgres_ledger)}
    cut = [(received, usage) for received, usage in written
           if any(after < position[usage] <= stop and not after < position[received] <= stop for after, stop in bounds)]
    assert len(bounds) == 16 and cut, "the ranges cut no request between its Received and its usage"
    book = dearer(base_price_book())
    start, end = START + timedelta(hours=hours[0]), START + timedelta(hours=hours[1])

    alone = plan(postgres_ledger, book, start, end, tenant)
    seen: list[int] = []
    side_by_side = plan(postgres_ledger, book, start, end, tenant, workers=2, progress=seen.append)

    assert outcome(side_by_side) == outcome(alone)
    assert alone.changed > 0 and alone.unpriced > 0 and alone.scanned > 0
    assert seen == [stop for _, stop in bounds]


def test_usage_whose_request_has_no_received_is_unattributed_in_workers_too(postgres_ledger):
    write_usage(postgres_ledger, 9)
    orphan = RequestTrace(uuid.uuid4())
    at = (START + timedelta(hours=3)).timestamp()
    orphan.entries.append((Request.Received, at, {
        "tenant": "acme", "key_id": "acme-key-0", "endpoint": "chat.completions", "model": MODELS[0],
        "stream": False, "body_bytes": 100, "body_sha256": "0" * 64, "messages": 1}))
    orphan.entries.append((Request.UsageMetered, at, {
        "provider": "openai", "model": MODELS[0], "input_tokens": 10, "output_tokens": 10, "cached_tokens": 0,
        "source": "provider", "price_book": "v1", "cost": "0.000010000"}))
    usage_only = orphan.domain_events()[1:]  # its Received never stored
    postgres_ledger.recorder.insert_events([postgres_ledger.mapper.to_stored_event(e) for e in usage_only])
    book = dearer(base_price_book())
    end = START + timedelta(days=30)

    alone, side_by_side = (plan(postgres_ledger, book, START, end, workers=w) for w in (1, 2))

    assert alone.unattributed == side_by_side.unattributed == 1
    assert outcome(side_by_side) == outcome(alone)


@pytest.mark.parametrize("head", [0, 1, 7, 99, 100_000, 1_234_567])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_ranges_cover_every_position_once_in_order(head, workers):
    bounds = repricing_pool.ranges(head, workers)
    covered = [p for after, stop in bounds for p in range(after + 1, stop + 1)]
    assert covered == list(range(1, head + 1))
    assert len(bounds) <= workers * repricing_pool.RANGES_PER_WORKER


def test_pages_with_text_ids_are_the_rows_with_their_ids_as_text(store_url, tmp_path: Path):
    ledger = Ledger.open(store_url, tmp_path)
    try:
        write_usage(ledger, 12)
        head = ledger.recorder.max_notification_id()
        for only in ((), USAGE_TOPICS, topics(Request.Completed)):
            for after, stop in ((0, None), (5, head - 4), (head, None)):
                expected = [(r.position, str(r.originator_id), r.version, r.topic, r.state)
                            for r in rows(ledger, after, stop, only)]
                got = [row for page in pages(ledger, after, stop, only, page=4, text_ids=True) for row in page]
                assert got == expected
                assert (len(expected) > 0) == (after < head)
    finally:
        ledger.close()
