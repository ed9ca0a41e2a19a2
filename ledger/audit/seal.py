"""Tamper evidence: a hash chain of seals over consecutive ranges of stored events.

A seal (`LedgerSeal.LedgerSealed`) covers the events stored with notification ids
in [first, last]. For each event it keeps the first 16 hex digits of the SHA-256 of
the row as stored (position, aggregate id, version, topic, state bytes: scan.Row
.digest), so `verify` can name the very event that was edited or deleted; over the
full digests it keeps one SHA-256 (`digest`); and it chains to the seal before it:
`chain = sha256(previous | first | last | count | digest)`. Seals are events of
the ledger too, so the next seal covers the one before it; the newest chain hash
is what to publish elsewhere (an auditor's notes, a ticket) to pin the head.

`seal_pending()` seals whatever is stored and not yet sealed. The leading tenancy
projection worker (ledger/projections/runner.py) runs it every few seconds, so a
running gateway (or `twoapi projections run`) seals its ledger; `twoapi ledger seal`
runs it once, and `--follow` every few seconds. Two sealers racing are harmless:
a seal is the next version of one aggregate, so the second fails and reads the
first's. PostgreSQL assigns notification ids under a table lock at insert, so ids
become visible in order and a seal never skips a row that commits later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError

from ledger.audit.scan import Row, rows, topics
from ledger.events import LedgerSeal

log = structlog.get_logger("ledger.seal")

SEAL_ID = LedgerSeal.create_id()
SEAL_TOPICS = topics(LedgerSeal.LedgerSealed)
MAX_EVENTS_PER_SEAL = 10_000
LEAF_HEX = 16


@dataclass(frozen=True, slots=True)
class Seal:
    version: int  # of the LedgerSeal aggregate
    position: int  # the seal event's own notification id (0 when not known)
    first: int
    last: int
    count: int
    positions: list[int]
    leaves: str
    digest: str
    previous: str
    chain: str

    def leaf(self, index: int) -> str:
        return self.leaves[index * LEAF_HEX:(index + 1) * LEAF_HEX]

    def expected_chain(self) -> str:
        return chain_hash(self.previous, self.first, self.last, self.count, self.digest)


def chain_hash(previous: str, first: int, last: int, count: int, digest: str) -> str:
    return hashlib.sha256(f"{previous}|{first}|{last}|{count}|{digest}".encode()).hexdigest()


def seals(ledger: Any) -> list[Seal]:
    """Every seal, oldest first, as stored (read through the notification log so each
    carries its own position)."""
    found = []
    for row in rows(ledger, only=SEAL_TOPICS):
        f = row.fields()
        found.append(Seal(row.version, row.position, f["first"], f["last"], f["count"], f["positions"],
                          f["leaves"], f["digest"], f["previous"], f["chain"]))
    return found


def _head(ledger: Any) -> tuple[int, str, int]:
    """(version of the seal aggregate, last chain hash, last position sealed); (0, "", 0)
    before the first seal."""
    stored = ledger.recorder.select_events(SEAL_ID, desc=True, limit=1)
    if not stored:
        return 0, "", 0
    event = stored[0]
    if event.originator_version == 1:  # only the aggregate's creation
        return 1, "", 0
    fields = ledger.mapper.transcoder.decode(event.state)
    return event.originator_version, fields["chain"], fields["last"]


def seal_pending(ledger: Any, max_events: int = MAX_EVENTS_PER_SEAL) -> int:
    """Seal every stored event not sealed yet, `max_events` per seal; the number sealed."""
    sealed = 0
    while True:
        version, previous, last = _head(ledger)
        batch = list(islice(rows(ledger, after=last, page=max_events), max_events))
        if all(row.topic in SEAL_TOPICS for row in batch):
            # Nothing but the newest seal itself: sealing it would only make another.
            return sealed
        try:
            if version == 0:
                ledger.save(LedgerSeal())
                version = 1
            ledger.save(_seal_event(version + 1, previous, batch))
        except IntegrityError:  # the chain's creation or this seal
            log.info("seal_raced", note="another sealer sealed first; reading its seal")
            continue
        sealed += len(batch)


def _seal_event(version: int, previous: str, batch: list[Row]) -> LedgerSeal.LedgerSealed:
    digests = [row.digest() for row in batch]
    digest = hashlib.sha256(b"".join(digests)).hexdigest()
    first, last = batch[0].position, batch[-1].position
    return LedgerSeal.LedgerSealed(
        originator_id=SEAL_ID,
        originator_version=version,
        timestamp=datetime.now(UTC),
        first=first,
        last=last,
        count=len(batch),
        positions=[row.position for row in batch],
        leaves="".join(d.hex()[:LEAF_HEX] for d in digests),
        digest=digest,
        previous=previous,
        chain=chain_hash(previous, first, last, len(batch), digest),
    )

