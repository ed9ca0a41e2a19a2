"""Reading the stored ledger fast and as it is stored.

Audit reads every event, so it skips the library's domain-event objects: each stored
row is kept as it is (for tamper evidence, which hashes the stored bytes) and its
state is decoded with orjson only for the topics a reader asks for.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from eventsourcing.utils import get_topic

from ledger.events import Request

PAGE = 5000


@dataclass(slots=True)
class Row:
    """One stored event: its notification id (position), aggregate, version, topic and
    stored state bytes."""

    position: int
    originator_id: Any  # UUID
    version: int
    topic: str
    state: bytes

    def fields(self) -> dict[str, Any]:
        return orjson.loads(self.state)

    @property
    def event_id(self) -> str:
        """As ledger.accounts.event_id names it: `<aggregate id>/<version>`."""
        return f"{self.originator_id}/{self.version}"

    def digest(self) -> bytes:
        """The row's SHA-256: position, aggregate, version, topic and state bytes."""
        head = f"{self.position}|{self.originator_id}|{self.version}|{self.topic}|".encode()
        return hashlib.sha256(head + self.state).digest()


def topics(*event_classes: type) -> tuple[str, ...]:
    return tuple(get_topic(cls) for cls in event_classes)


def rows(ledger: Any, after: int = 0, stop: int | None = None, only: Iterable[str] = (),
         page: int = PAGE) -> Iterator[Row]:
    """Stored events with position > `after` (and <= `stop`), in order; `only`: topics."""
    wanted = tuple(only)
    start = after
    while True:
        batch = ledger.recorder.select_notifications(start, page, stop=stop, topics=wanted,
                                                     inclusive_of_start=False)
        for n in batch:
            yield Row(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state))
        if len(batch) < page:
            return
        start = batch[-1].id


def timestamp(fields: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(fields["timestamp"])


class Owners:
    """Whose request a usage event belongs to: (tenant, key id) by request id.

    A request's events are committed together, so its `Received` is read just before
    its usage: the last `capacity` requests are remembered, and an older one is
    looked up by reading its first event, which keeps long scans in constant memory.
    """

    def __init__(self, ledger: Any, capacity: int = 100_000) -> None:
        self.ledger = ledger
        self.capacity = capacity
        self._recent: OrderedDict[Any, tuple[str, str] | None] = OrderedDict()

    def received(self, request_id: Any, fields: dict[str, Any]) -> None:
        self._remember(request_id, (fields["tenant"], fields["key_id"]))

    def of(self, request_id: Any) -> tuple[str, str] | None:
        if request_id in self._recent:
            return self._recent[request_id]
        stored = self.ledger.recorder.select_events(request_id, limit=1)
        owner = None
        if stored and stored[0].topic == RECEIVED_TOPIC:
            fields = orjson.loads(stored[0].state)
            owner = (fields["tenant"], fields["key_id"])
        self._remember(request_id, owner)
        return owner

    def _remember(self, request_id: Any, owner: tuple[str, str] | None) -> None:
        self._recent[request_id] = owner
        if len(self._recent) > self.capacity:
            self._recent.popitem(last=False)


RECEIVED_TOPIC = get_topic(Request.Received)
