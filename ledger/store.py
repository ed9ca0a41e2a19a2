"""Which event store the ledger uses: SQLite in the data dir, or PostgreSQL.

Everything store-specific about the ledger is decided here, as the environment the
eventsourcing library reads (its persistence module, names, pool sizes).
`DATABASE_URL` may carry `?schema=NAME` to keep the ledger in its own schema (tests
use one schema per run).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql


def persistence_env(database_url: str | None, data_dir: Path) -> dict[str, str]:
    if database_url:
        return _postgres_env(database_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(data_dir / "ledger.sqlite3"),
        "SQLITE_LOCK_TIMEOUT": "30",
        "CREATE_TABLE": "y",
    }


def _postgres_env(database_url: str) -> dict[str, str]:
    url = urlsplit(database_url)
    if url.scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {url.scheme}://")
    schema = parse_qs(url.query).get("schema", [""])[0]
    if schema:
        ensure_schema(database_url, schema)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "4",
        # Seconds a commit may wait for a connection before the request gets 503.
        "POSTGRES_CONNECT_TIMEOUT": "2",
        "APPLICATION_RECORDER_TOPIC": "ledger.recorders:FailFastPostgresRecorder",
        "POSTGRES_PRE_PING": "y",
        "CREATE_TABLE": "y",
    }


def connect_kwargs(database_url: str) -> dict[str, object]:
    """psycopg connection arguments for a DATABASE_URL (without our `schema` option)."""
    url = urlsplit(database_url)
    return {
        "dbname": unquote(url.path.lstrip("/")) or "postgres",
        "host": url.hostname or "127.0.0.1",
        "port": url.port or 5432,
        "user": unquote(url.username or "postgres"),
        "password": unquote(url.password or ""),
        "connect_timeout": 5,
    }


def ensure_schema(database_url: str, schema: str) -> None:
    with psycopg.connect(**connect_kwargs(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
