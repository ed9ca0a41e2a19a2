"""A request's trace maps to stored events without building the domain event objects,
and what it makes is what the library's mapper makes of those objects, byte for byte:

- every kind of request event, fields given in any order, defaults filled in;
- a field the event class does not have, or one it requires and did not get, is
  refused as the class's own constructor refuses it;
- a mapper that compresses (or encrypts) gets the objects, as before, and so does an
  event the mapper stores differently (a class version, a default made by a factory).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import field
from pathlib import Path

import pytest
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import Mapper

from ledger.application import Ledger
from ledger.events import Request
from ledger.trace import RequestTrace
from ledger.transcoder import OrjsonTranscoder
from tests.ledger.test_writer_fast_path import failed_trace, full_trace


@pytest.fixture
def mapper(tmp_path: Path) -> Iterator[Mapper]:
    ledger = Ledger.open(None, tmp_path)
    yield ledger.mapper
    ledger.close()


def through_objects(trace: RequestTrace, mapper: Mapper) -> list:
    return [mapper.to_stored_event(event) for event in trace.domain_events()]


@pytest.mark.parametrize("make", [full_trace, failed_trace])
def test_a_trace_maps_to_what_the_mapper_makes_of_its_event_objects(mapper, make):
    trace = make(uuid.uuid4())
    stored = trace.stored_events(mapper)
    assert stored == through_objects(trace, mapper)
    assert [event.originator_version for event in stored] == list(range(1, len(trace.entries) + 1))
    events = [mapper.to_domain_event(event) for event in stored]
    assert events == trace.domain_events()  # the library reads back the same objects


def test_fields_in_another_order_and_defaults_left_out_map_the_same(mapper):
    trace = RequestTrace(uuid.uuid4())
    trace.add(Request.Received, messages=1, body_sha256="00", body_bytes=10, stream=False, model="auto",
              endpoint="chat.completions", key_id="k", tenant="t")
    trace.add(Request.Routed, reason="cheapest", chain=["openai/gpt-4o-mini"], candidates=[], strategy="cost")
    stored = trace.stored_events(mapper)
    assert stored == through_objects(trace, mapper)
    routed = mapper.transcoder.decode(stored[1].state)
    assert routed["options"] is None  # the class's default, stored as the object would have it
    assert list(routed)[:3] == ["timestamp", "strategy", "candidates"]  # declaration order


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"attempt": 1, "provider": "openai", "model": "m", "prompt": "secret"}, "unexpected"),
        ({"attempt": 1, "provider": "openai"}, "missing"),
    ],
)
def test_a_field_the_event_class_would_refuse_is_refused(mapper, fields, problem):
    trace = RequestTrace(uuid.uuid4())
    trace.add(Request.Received, tenant="t", key_id="k", endpoint="chat.completions", model="auto", stream=False,
              body_bytes=10, body_sha256="00", messages=1)
    trace.add(Request.AttemptStarted, **fields)
    with pytest.raises(TypeError):
        through_objects(trace, mapper)
    with pytest.raises(TypeError, match=problem):
        trace.stored_events(mapper)


def test_a_compressing_mapper_still_gets_the_event_objects():
    mapper = Mapper(OrjsonTranscoder(), compressor=ZlibCompressor())
    trace = full_trace(uuid.uuid4())
    stored = trace.stored_events(mapper)
    assert [mapper.to_domain_event(event) for event in stored] == trace.domain_events()
    assert stored[0].state[:1] != b"{"  # compressed, as the mapper does it


class Noted(Request.Event):
    """An event whose default is made by a factory: its state is the mapper's to make."""

    notes: list[str] = field(default_factory=list)


class Versioned(Request.Event):
    class_version = 2
    detail: str


def test_events_the_mapper_makes_differently_go_through_their_objects(mapper):
    trace = full_trace(uuid.uuid4())
    trace.add(Noted)
    trace.add(Versioned, detail="d")
    stored = trace.stored_events(mapper)
    assert stored == through_objects(trace, mapper)
    assert mapper.transcoder.decode(stored[-2].state)["notes"] == []
    assert mapper.transcoder.decode(stored[-1].state)["class_version"] == 2
