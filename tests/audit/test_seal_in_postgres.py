"""On PostgreSQL the server hashes the rows a seal covers; what it computes is what
`Row.digest` computes from the same rows in Python (which `verify` recomputes):

- positions, leaves and batch digest equal, for whole and partial ranges, for states
  holding any bytes (non-ASCII text included);
- nothing stored past a position: nothing to seal;
- a batch of nothing but seals is told apart, so the sealer stops.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.audit.scan import rows
from ledger.audit.seal import _pending_in_postgres, pending_of, seal_pending, seals
from ledger.events import Request
from ledger.trace import RequestTrace
from tests.ledger.test_writer_fast_path import failed_trace, full_trace


@pytest.fixture
def ledger(tmp_path: Path, postgres_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(postgres_url, tmp_path)
    yield opened
    opened.close()


def store(ledger: Ledger, traces: list[RequestTrace]) -> None:
    ledger.recorder.append_events([event for trace in traces for event in trace.stored_events(ledger.mapper)])


def in_python(ledger: Ledger, after: int, limit: int):
    return pending_of(list(islice(rows(ledger, after=after, page=limit), limit)))


def test_the_server_hashes_the_rows_as_row_digest_does(ledger):
    unicode = RequestTrace(uuid.uuid4())
    unicode.add(Request.Received, tenant="société-€", key_id="k", endpoint="chat.completions", model="ünïcode/模型",
                stream=False, body_bytes=10, body_sha256="00", messages=1)
    store(ledger, [full_trace(uuid.uuid4()), failed_trace(uuid.uuid4()), unicode, full_trace(uuid.uuid4())])
    total = len(list(rows(ledger)))
    for after, limit in [(0, 10_000), (0, 7), (5, 11), (total - 1, 100)]:
        server = _pending_in_postgres(ledger.recorder, after, limit)
        assert server is not None and server == in_python(ledger, after, limit)
        assert len(server.positions) == min(limit, total - after)
        assert not server.only_seals


def test_nothing_past_the_last_position_is_nothing_to_seal(ledger):
    store(ledger, [full_trace(uuid.uuid4())])
    last = max(row.position for row in rows(ledger))
    assert _pending_in_postgres(ledger.recorder, last, 100) is None


def test_sealing_on_postgres_stops_at_the_newest_seal(ledger):
    store(ledger, [full_trace(uuid.uuid4()) for _ in range(3)])
    # 30 request events; the chain's creation and the first two seals are sealed too.
    assert seal_pending(ledger, max_events=12) == 33
    chain = seals(ledger)
    assert [seal.count for seal in chain] == [12, 12, 9]
    newest = max(row.position for row in rows(ledger))
    # Beyond the last sealed position: the newest seal, nothing else.
    pending = _pending_in_postgres(ledger.recorder, chain[-1].last, 100)
    assert pending is not None and pending.only_seals and pending.positions == [newest]
    assert seal_pending(ledger) == 0
