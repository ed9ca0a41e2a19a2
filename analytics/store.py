"""The analytics store: one clickhouse-connect client for both engines.

`chdb:///<data dir>/analytics` (the embedded default) and `CLICKHOUSE_URL`
(a ClickHouse server over HTTP) give the same client class interface, so the
projection, the migrations and the queries run the same SQL on both. Everything
that differs between the engines is in this module: how to connect, and which
errors mean "the store is not there right now" rather than "this SQL is wrong".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
import structlog
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError, ProgrammingError

from analytics.config import AnalyticsConfig

log = structlog.get_logger("analytics.store")

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations" / "clickhouse"


class StoreUnavailable(Exception):
    """The analytics store cannot be reached (server down, or the chDB data path is
    held by another process). Callers wait and retry; the ledger is unaffected."""


class AnalyticsStore:
    def __init__(self, client: Any, engine: str, where: str) -> None:
        self._client = client
        self.engine = engine  # "chdb" | "clickhouse"
        self.where = where  # a path or host, never credentials
        # clickhouse-connect's chDB client serialises calls per client already; the
        # lock makes the same true of the HTTP client and keeps close() safe.
        self._lock = threading.Lock()
        self._types: dict[str, dict[str, str]] = {}

    @classmethod
    def open(cls, config: AnalyticsConfig) -> AnalyticsStore:
        try:
            if config.clickhouse_url:
                client = clickhouse_connect.get_client(
                    dsn=config.clickhouse_url, connect_timeout=3, send_receive_timeout=60, autogenerate_session_id=False
                )
                where = client.url if hasattr(client, "url") else "clickhouse server"
                return cls(client, "clickhouse", _without_credentials(where))
            config.chdb_path.mkdir(parents=True, exist_ok=True)
            client = clickhouse_connect.get_client(dsn=f"chdb://{config.chdb_path.resolve()}")
            return cls(client, "chdb", str(config.chdb_path))
        except (ClickHouseError, OSError) as error:
            raise StoreUnavailable(f"cannot open the {config.engine} analytics store: {_short(error)}") from error

    def query(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = self._call(lambda c: c.query(sql, parameters=params or {}))
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def records(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        columns, rows = self.query(sql, params)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        _, rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._call(lambda c: c.command(sql, parameters=params or None))

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], token: str) -> None:
        """Insert one block. `token` names the block: inserting the same token again
        (a batch re-shipped after a crash) is dropped by ClickHouse, in the table and
        in the materialized views that read from it."""
        if not rows:
            return
        types = self._column_types(table, columns)
        settings = {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}
        self._call(lambda c: c.insert(table, rows, column_names=list(columns), column_type_names=types,
                                      settings=settings))

    def _column_types(self, table: str, columns: Sequence[str]) -> list[str]:
        # Known types spare the client a DESCRIBE per insert (half the cost of a small batch).
        known = self._types.get(table)
        if known is None:
            _, rows = self.query("SELECT name, type FROM system.columns WHERE database = currentDatabase()"
                                 " AND table = {t:String}", {"t": table})
            known = self._types[table] = dict(rows)
        return [known[c] for c in columns]

    def close(self) -> None:
        with self._lock, contextlib.suppress(ClickHouseError):  # closing a broken connection is not news
            self._client.close()

    def _call(self, operation: Any) -> Any:
        with self._lock:
            try:
                return operation(self._client)
            except OperationalError as error:
                raise StoreUnavailable(_short(error)) from error
            except ProgrammingError as error:
                if "closed" in str(error).lower():
                    raise StoreUnavailable(_short(error)) from error
                raise


def migrate(store: AnalyticsStore, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the versioned SQL files (`NNN_name.sql`) not yet applied, in order.
    Each statement is idempotent (IF NOT EXISTS), so a migration interrupted half-way
    is simply run again."""
    store.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied DateTime64(3, 'UTC'))"
        " ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in store.query("SELECT version FROM schema_migrations")[1]}
    applied = []
    for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
        version = int(path.name[:3])
        if version in done:
            continue
        for statement in split_statements(path.read_text()):
            store.command(statement)
        store.command(
            "INSERT INTO schema_migrations SELECT {v:UInt32}, {n:String}, now64(3)", {"v": version, "n": path.name}
        )
        applied.append(path.name)
        log.info("analytics_migration_applied", migration=path.name, engine=store.engine)
    return applied


def split_statements(text: str) -> list[str]:
    """A migration file's statements: `;` at the end of a line ends one, `--` starts
    a comment (our migrations hold no string literals with either)."""
    statements, current = [], []
    for line in text.splitlines():
        code = line.split("--", 1)[0].rstrip()
        if not code.strip():
            continue
        current.append(code)
        if code.endswith(";"):
            statements.append("\n".join(current)[:-1].strip())
            current = []
    if current:
        statements.append("\n".join(current).strip())
    return [s for s in statements if s]


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300]


def _without_credentials(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2] if sep else url
