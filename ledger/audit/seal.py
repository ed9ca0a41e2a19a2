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

On PostgreSQL the server hashes the rows (`sha256()` over the same bytes `Row.digest`
hashes) and sends back only positions, leaves and the batch digest: the state bytes
never cross the wire again, and the sealer's Python work per event (a row object and
a digest, ~5 us) is gone from the process that shares a core with serving. `verify`
still recomputes every digest from the rows in Python, so the two must agree
(tests/audit/test_seal_in_postgres.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import InterfaceError, OperationalError
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

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


@dataclass(frozen=True, slots=True)
class Pending:
    """The next stored events not sealed yet, as a seal covers them."""

    positions: list[int]
    leaves: str  # LEAF_HEX hex digits of each row's digest, in order
    digest: str  # SHA-256 over the rows' full digests, in order
    only_seals: bool  # nothing there but seals


def seal_pending(ledger: Any, max_events: int = MAX_EVENTS_PER_SEAL) -> int:
    """Seal every stored event not sealed yet, `max_events` per seal; the number sealed."""
    sealed = 0
    while True:
        version, previous, last = _head(ledger)
        pending = _pending(ledger, last, max_events)
        if pending is None or pending.only_seals:
            # Nothing, or nothing but the newest seal itself: sealing it would only make another.
            return sealed
        try:
            if version == 0:
                ledger.save(LedgerSeal())
                version = 1
            ledger.save(_seal_event(version + 1, previous, pending))
        except IntegrityError:  # the chain's creation or this seal
            log.info("seal_raced", note="another sealer sealed first; reading its seal")
            continue
        sealed += len(pending.positions)


def _pending(ledger: Any, after: int, limit: int) -> Pending | None:
    recorder = ledger.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        return _pending_in_postgres(recorder, after, limit)
    return pending_of(list(islice(rows(ledger, after=after, page=limit), limit)))


def pending_of(batch: list[Row]) -> Pending | None:
    """What a seal over these rows covers, hashed here."""
    if not batch:
        return None
    digests = [row.digest() for row in batch]
    return Pending(
        positions=[row.position for row in batch],
        leaves="".join(d.hex()[:LEAF_HEX] for d in digests),
        digest=hashlib.sha256(b"".join(digests)).hexdigest(),
        only_seals=all(row.topic in SEAL_TOPICS for row in batch),
    )


_PENDING_SQL = (
    "SELECT array_agg(notification_id ORDER BY notification_id),"
    f" string_agg(left(encode(row_digest, 'hex'), {LEAF_HEX}), '' ORDER BY notification_id),"
    " encode(sha256(string_agg(row_digest, ''::bytea ORDER BY notification_id)), 'hex'),"
    " bool_and(topic = ANY(%s))"
    " FROM (SELECT notification_id, topic,"
    # Row.digest's bytes: "position|aggregate id|version|topic|" in UTF-8, then the state.
    "  sha256(convert_to(notification_id::text || '|' || originator_id::text || '|'"
    "   || originator_version::text || '|' || topic || '|', 'UTF8') || state) AS row_digest"
    "  FROM {table} WHERE notification_id > %s ORDER BY notification_id LIMIT %s) AS batch"
)


@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as the library's reads
def _pending_in_postgres(recorder: PostgresApplicationRecorder, after: int, limit: int) -> Pending | None:
    statement = SQL(_PENDING_SQL).format(
        table=Identifier(recorder.datastore.schema, recorder.events_table_name)
    )
    with recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
        curs.execute(statement, [list(SEAL_TOPICS), after, limit], prepare=True)
        found = curs.fetchone()
    if found is None or found[0] is None:
        return None
    positions, leaves, digest, only_seals = found
    return Pending(list(positions), leaves, digest, bool(only_seals))


def _seal_event(version: int, previous: str, pending: Pending) -> LedgerSeal.LedgerSealed:
    first, last, count = pending.positions[0], pending.positions[-1], len(pending.positions)
    return LedgerSeal.LedgerSealed(
        originator_id=SEAL_ID,
        originator_version=version,
        timestamp=datetime.now(UTC),
        first=first,
        last=last,
        count=count,
        positions=pending.positions,
        leaves=pending.leaves,
        digest=pending.digest,
        previous=previous,
        chain=chain_hash(previous, first, last, count, pending.digest),
    )
