"""A tiny migration runner for the projection tables.

`migrations/<dialect>/NNNN_name.sql` files are applied in order, each in its own
transaction, and recorded in `schema_migrations`. The files are idempotent (`IF NOT
EXISTS`) and recording uses `ON CONFLICT DO NOTHING`, so processes racing to migrate
the same database are harmless; on PostgreSQL they also queue on an advisory lock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self) -> list[str]:
        text = "\n".join(line.split("--", 1)[0] for line in self.path.read_text().splitlines())
        return [part.strip() for part in text.split(";") if part.strip()]


def migrations(dialect: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    folder = directory / dialect
    if not folder.is_dir():
        raise FileNotFoundError(f"no migrations for {dialect} in {folder}")
    found = []
    for path in sorted(folder.iterdir()):
        match = _FILE.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return found


def migrate(transaction: Callable[[], AbstractContextManager[Any]], dialect: str,
            schema: str | None = None) -> list[str]:
    """Apply the migrations not yet applied, each in a `transaction()` (a write
    transaction of the view's store); the names of those applied now."""
    param = "%s" if dialect == "postgres" else "?"
    applied_now = []
    with transaction() as cursor:
        _search_path(cursor, dialect, schema)
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
    for migration in migrations(dialect):
        with transaction() as cursor:
            _search_path(cursor, dialect, schema)
            if dialect == "postgres":
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}.schema_migrations",))
            cursor.execute(f"SELECT 1 FROM schema_migrations WHERE version = {param}", (migration.version,))
            if cursor.fetchone():
                continue
            for statement in migration.statements():
                cursor.execute(statement)
            cursor.execute(
                f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({param}, {param}, {param}) "
                "ON CONFLICT (version) DO NOTHING",
                (migration.version, migration.name, datetime.now(UTC).isoformat()),
            )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
    return applied_now


def applied(datastore: Any, dialect: str, schema: str | None = None) -> list[tuple[int, str, str]]:
    with datastore.transaction(commit=False) as cursor:
        _search_path(cursor, dialect, schema)
        cursor.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        return [(row["version"], row["name"], row["applied_at"]) for row in cursor.fetchall()]


def _search_path(cursor: Any, dialect: str, schema: str | None) -> None:
    if dialect == "postgres":
        from psycopg import sql

        cursor.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema or "public")))
