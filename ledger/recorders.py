"""Recorder variants for the ledger's event store.

The library's PostgreSQL recorder retries a failed insert or read up to ten times,
0.2 s apart, on top of connection timeouts: right for a batch job, wrong for a gateway that
holds a client's response until its events are stored. Ours tries once, so a request
learns within the connect timeout whether it may be served, and an outage becomes
`503 ledger_unavailable` instead of a hang. (As with any database client, a connection
lost after COMMIT was sent leaves the outcome unknown to us; such a request is answered
503 though its events may be stored: billed-but-refused is possible, served-but-unbilled
is not.)
"""

from __future__ import annotations

from eventsourcing.postgres import PostgresApplicationRecorder


class FailFastPostgresRecorder(PostgresApplicationRecorder):
    insert_events = PostgresApplicationRecorder.insert_events.__wrapped__  # type: ignore[attr-defined]
    # Reads on the request path (API key lookups) fail fast too.
    select_events = PostgresApplicationRecorder.select_events.__wrapped__  # type: ignore[attr-defined]
