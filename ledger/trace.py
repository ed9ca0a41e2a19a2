"""The events of one request, gathered on the request path.

The request path only appends (event class, time, fields) tuples; the ledger writer
turns them into stored events when it commits, off the request's own code.

`stored_events` maps them the way the library's mapper maps domain event objects
(the same topic, the same state bytes), without building the objects first: a frozen
dataclass per event, set field by field, then copied back into a dict by the mapper,
was the writer's largest cost per event (py-spy, bench/README.md). The objects are
still what the library reads back, and `domain_events` still builds them (for
`Application.save`, and for a mapper that compresses or encrypts).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic

from ledger.events import ENVELOPE_FIELDS, Request
from ledger.transcoder import OrjsonTranscoder

_REQUEST_TOPIC = get_topic(Request)

@dataclasses.dataclass(frozen=True)
class _Shape:
    """What the mapper would find in an event object of one class: its fields past
    the envelope, in declaration order (the order of its state), and their defaults."""

    topic: str
    names: tuple[str, ...]
    name_set: frozenset[str]
    defaults: dict[str, Any]

    @classmethod
    def of(cls, event_class: type) -> _Shape | None:
        """None for a class whose state the mapper makes differently (a class version
        to record, defaults made by a factory): such events go through the objects."""
        fields = [f for f in dataclasses.fields(event_class) if f.name not in ENVELOPE_FIELDS]
        if getattr(event_class, "class_version", 1) > 1 or any(
            f.default_factory is not dataclasses.MISSING for f in fields
        ):
            return None
        names = tuple(f.name for f in fields)
        defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
        return cls(get_topic(event_class), names, frozenset(names), defaults)

    def state(self, timestamp: datetime, created: bool, fields: dict[str, Any]) -> dict[str, Any]:
        if fields.keys() != self.name_set:
            fields = self._with_defaults(fields)
        state: dict[str, Any] = {"timestamp": timestamp}
        if created:
            state["originator_topic"] = _REQUEST_TOPIC
        for name in self.names:
            state[name] = fields[name]
        return state

    def _with_defaults(self, fields: dict[str, Any]) -> dict[str, Any]:
        # As the event class's __init__ would: unknown or missing fields are an error.
        unknown = fields.keys() - self.name_set
        if unknown:
            raise TypeError(f"unexpected event fields: {sorted(unknown)}")
        missing = self.name_set - fields.keys() - self.defaults.keys()
        if missing:
            raise TypeError(f"missing event fields: {sorted(missing)}")
        return {**self.defaults, **fields}


_shapes: dict[type, _Shape | None] = {}


def _shape(event_class: type) -> _Shape | None:
    if event_class not in _shapes:
        _shapes[event_class] = _Shape.of(event_class)
    return _shapes[event_class]


class RequestTrace:
    __slots__ = ("entries", "request_id")

    def __init__(self, request_id: uuid.UUID) -> None:
        self.request_id = request_id
        self.entries: list[tuple[type, float, dict[str, Any]]] = []

    def add(self, event_class: type, **fields: Any) -> None:
        self.entries.append((event_class, time.time(), fields))

    def names(self) -> list[str]:
        return [cls.__name__ for cls, _, _ in self.entries]

    def domain_events(self) -> list[Any]:
        return [self._event(version, *entry) for version, entry in enumerate(self.entries, start=1)]

    def stored_events(self, mapper: Mapper) -> list[StoredEvent]:
        """What `mapper.to_stored_event` makes of `domain_events()`, byte for byte."""
        if mapper.compressor or mapper.cipher or not isinstance(mapper.transcoder, OrjsonTranscoder):
            return [mapper.to_stored_event(event) for event in self.domain_events()]
        encode = mapper.transcoder.encode
        stored = []
        for version, (cls, at, fields) in enumerate(self.entries, start=1):
            shape = _shape(cls)
            if shape is None:
                stored.append(mapper.to_stored_event(self._event(version, cls, at, fields)))
                continue
            state = shape.state(datetime.fromtimestamp(at, UTC), version == 1, fields)
            stored.append(StoredEvent(self.request_id, version, shape.topic, encode(state)))
        return stored

    def _event(self, version: int, cls: type, at: float, fields: dict[str, Any]) -> Any:
        extra = {"originator_topic": _REQUEST_TOPIC} if version == 1 else {}
        return cls(
            originator_id=self.request_id,
            originator_version=version,
            timestamp=datetime.fromtimestamp(at, UTC),
            **extra,
            **fields,
        )
