"""The events of one request, gathered on the request path.

The request path only appends (event class, time, fields) tuples; the domain event
objects are built in the ledger writer's thread, so their construction and encoding
stay off the latency of the request.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from eventsourcing.utils import get_topic

from ledger.events import Request

_REQUEST_TOPIC = get_topic(Request)


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
        events = []
        for version, (cls, at, fields) in enumerate(self.entries, start=1):
            extra = {"originator_topic": _REQUEST_TOPIC} if version == 1 else {}
            events.append(
                cls(
                    originator_id=self.request_id,
                    originator_version=version,
                    timestamp=datetime.fromtimestamp(at, UTC),
                    **extra,
                    **fields,
                )
            )
        return events
