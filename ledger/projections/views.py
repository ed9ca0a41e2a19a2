"""The tenancy projection's SQL tables: written in batches, each batch atomically with
its tracking record, and read by the gateway, the Admin API and the CLI.

The views are the eventsourcing library's tracking recorders (SQLite and
PostgreSQL) extended with our tables (created by `migrations/`). A batch is
applied in one transaction that first checks the tracking position is still the
one the batch follows, then writes the rows, then records the position of the
batch's last event: so each event is applied exactly once, even with a crash
between any two statements or a second projection process racing this one.

Everything that differs between the two stores is here, in `Dialect`: placeholders,
schema-qualified names, and how money and times are stored (PostgreSQL NUMERIC and
TIMESTAMPTZ; SQLite Decimal strings and ISO 8601 text). Money arithmetic is done
in Python with Decimal on both.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteTrackingRecorder

from ledger.accounts import money_text
from ledger.projections.migrate import migrate

APPLICATION_NAME = "Ledger"  # the application whose notification log is followed
ZERO = Decimal(0)


# -- a batch of changes, built by the projection from consecutive events --------


@dataclass(slots=True)
class AccountDelta:
    tenant: str | None
    amount: Decimal = ZERO
    entries: int = 0
    last_event_at: datetime | None = None
    position: int = 0


@dataclass(slots=True)
class UsageDelta:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    estimated: int = 0
    cost: Decimal = ZERO


@dataclass(slots=True)
class Batch:
    after: int | None  # the tracking position this batch follows
    ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)  # in event order
    requests: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    entries: list[tuple[str, int, str, str | None, Decimal, str, str, datetime]] = field(default_factory=list)
    accounts: dict[str, AccountDelta] = field(default_factory=dict)
    usage: dict[tuple[str, date, str, str], UsageDelta] = field(default_factory=dict)
    spend: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    last_used: dict[str, datetime] = field(default_factory=dict)
    events: int = 0
    last: Tracking | None = None


# -- the views --------------------------------------------------------------------


class TenancyView(TrackingRecorder):
    """Our tables on top of a library tracking recorder (see the two subclasses)."""

    dialect = ""
    datastore: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._statements: dict[str, str] = {}

    # dialect hooks
    @property
    def schema(self) -> str | None:
        return None

    def tracking_table(self) -> str:
        raise NotImplementedError

    def money_in(self, amount: Decimal) -> Any:
        return money_text(amount)

    def time_in(self, at: datetime) -> Any:
        return _iso(at)

    def day_in(self, day: date) -> Any:
        return day.isoformat()

    def sql(self, text: str) -> str:
        """Our SQL with `@table` names qualified and `?` placeholders as the driver wants."""
        statement = self._statements.get(text)
        if statement is None:
            prefix = f'"{self.schema}".' if self.schema else ""
            statement = text.replace("@", prefix)
            if self.dialect == "postgres":
                statement = statement.replace("?", "%s")
            self._statements[text] = statement
        return statement

    def create_table(self) -> None:
        with self.schema_lock():
            super().create_table()  # the library's tracking table
            migrate(self.writing, self.dialect, self.schema)

    def schema_lock(self) -> AbstractContextManager[None]:
        """Serialises creating and migrating the tables between processes."""
        raise NotImplementedError

    @contextmanager
    def reading(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=False) as cursor:
            yield cursor

    @contextmanager
    def writing(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as cursor:
            yield cursor

    # -- writing a batch ----------------------------------------------------------

    def apply(self, batch: Batch) -> None:
        assert batch.last is not None
        with self.writing() as c:
            current = self._tracked_for_update(c)
            if current != batch.after:
                raise IntegrityError(
                    f"tracking moved to {current} while a batch after {batch.after} was being applied"
                )
            self._write(c, batch)
            self._insert_tracking(c, batch.last)

    def _tracked_for_update(self, c: Any) -> int | None:
        lock = " FOR UPDATE" if self.dialect == "postgres" else ""
        c.execute(
            self.sql(f"SELECT notification_id FROM {self.tracking_table()} WHERE application_name = ?{lock}"),
            (APPLICATION_NAME,),
        )
        row = c.fetchone()
        return None if row is None else row["notification_id"]

    def _write(self, c: Any, batch: Batch) -> None:
        for op, args in batch.ops:
            getattr(self, "_op_" + op)(c, *args)
        if batch.requests:
            self.insert_rows(c, "request_tenants", _REQUEST_TENANT_COLUMNS,
                             [(r, t, k, self.time_in(at)) for r, t, k, at in batch.requests],
                             "ON CONFLICT (request_id) DO NOTHING")
        if batch.entries:
            self.insert_rows(c, "entries", _ENTRY_COLUMNS,
                             [(e, p, a, t, self.money_in(m), k, r, self.time_in(at))
                              for e, p, a, t, m, k, r, at in batch.entries])
        for account, delta in batch.accounts.items():
            self._accumulate(
                c, "accounts", {"account": account},
                money={"balance": delta.amount}, counts={"entries": delta.entries},
                latest={"last_event_at": delta.last_event_at},
                fixed={"tenant": delta.tenant, "position": delta.position},
            )
        for (tenant, day, key_id, model), usage in batch.usage.items():
            self._accumulate(
                c, "usage_daily", {"tenant": tenant, "day": self.day_in(day), "key_id": key_id, "model": model},
                money={"cost": usage.cost},
                counts={"requests": usage.requests, "input_tokens": usage.input_tokens,
                        "output_tokens": usage.output_tokens, "cached_tokens": usage.cached_tokens,
                        "estimated": usage.estimated},
            )
        for (tenant, month), cost in batch.spend.items():
            self._accumulate(c, "spend_monthly", {"tenant": tenant, "month": month}, money={"cost": cost})
        for key_id, at in batch.last_used.items():
            value = self.time_in(at)
            c.execute(
                self.sql("UPDATE @api_keys SET last_used_at = ? WHERE key_id = ? "
                         "AND (last_used_at IS NULL OR last_used_at < ?)"),
                (value, key_id, value),
            )

    def insert_rows(self, c: Any, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple[Any, ...]],
                    on_conflict: str = "") -> None:
        """Rows into @table, one INSERT each (PostgreSQL sends them as arrays instead)."""
        names = ", ".join(name for name, _ in columns)
        places = ", ".join("?" for _ in columns)
        c.executemany(self.sql(f"INSERT INTO @{table} ({names}) VALUES ({places}) {on_conflict}"), rows)

    def _accumulate(self, c: Any, table: str, keys: dict[str, Any], money: dict[str, Decimal] | None = None,
                    counts: dict[str, int] | None = None, latest: dict[str, datetime | None] | None = None,
                    fixed: dict[str, Any] | None = None) -> None:
        """Add to a row's money and counters (creating it if need be), in Python
        Decimal arithmetic; `latest` columns keep the later time, `fixed` are set."""
        money, counts, latest, fixed = money or {}, counts or {}, latest or {}, fixed or {}
        where = " AND ".join(f"{k} = ?" for k in keys)
        selected = [*money, *latest] or ["1"]
        c.execute(self.sql(f"SELECT {', '.join(selected)} FROM @{table} WHERE {where}"), tuple(keys.values()))
        row = c.fetchone()
        values: dict[str, Any] = {}
        for column, delta in money.items():
            values[column] = self.money_in((Decimal(str(row[column])) if row else ZERO) + delta)
        for column, at in latest.items():
            old = _as_datetime(row[column]) if row and row[column] is not None else None
            newest = max((t for t in (old, at) if t is not None), default=None)
            values[column] = self.time_in(newest) if newest is not None else None
        values.update(fixed)
        if row is None:
            values.update(counts)
            columns = [*keys, *values]
            c.execute(
                self.sql(f"INSERT INTO @{table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"),
                (*keys.values(), *values.values()),
            )
            return
        assignments = [f"{k} = ?" for k in values] + [f"{k} = {k} + ?" for k in counts]
        c.execute(
            self.sql(f"UPDATE @{table} SET {', '.join(assignments)} WHERE {where}"),
            (*values.values(), *counts.values(), *keys.values()),
        )

    # ordered operations (one per admin event)

    def _op_tenant_created(self, c: Any, name: str, tenant_id: str, at: datetime) -> None:
        c.execute(
            self.sql("INSERT INTO @tenants (name, tenant_id, created_at, updated_at) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (name) DO NOTHING"),
            (name, tenant_id, self.time_in(at), self.time_in(at)),
        )

    def _op_tenant_status(self, c: Any, tenant_id: str, status: str, reason: str, at: datetime) -> None:
        c.execute(
            self.sql("UPDATE @tenants SET status = ?, status_reason = ?, updated_at = ? WHERE tenant_id = ?"),
            (status, reason, self.time_in(at), tenant_id),
        )

    def _op_tenant_limits(self, c: Any, tenant_id: str, rpm: int | None, tpm: int | None, cap: str | None,
                          at: datetime) -> None:
        c.execute(
            self.sql("UPDATE @tenants SET rpm = ?, tpm = ?, monthly_cap = ?, updated_at = ? WHERE tenant_id = ?"),
            (rpm, tpm, None if cap is None else self.money_in(Decimal(cap)), self.time_in(at), tenant_id),
        )

    def _op_key_issued(self, c: Any, key_id: str, key_hash: str, tenant: str, prefix: str, label: str,
                       at: datetime) -> None:
        c.execute(
            self.sql("INSERT INTO @api_keys (key_id, key_hash, tenant, prefix, label, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key_id) DO NOTHING"),
            (key_id, key_hash, tenant, prefix, label, self.time_in(at)),
        )

    def _op_key_revoked(self, c: Any, key_id: str, at: datetime) -> None:
        c.execute(self.sql("UPDATE @api_keys SET status = 'revoked', revoked_at = ? WHERE key_id = ?"),
                  (self.time_in(at), key_id))

    def _op_key_limits(self, c: Any, key_id: str, rpm: int | None, tpm: int | None,
                       allowed_models: list[str] | None) -> None:
        models = None if allowed_models is None else json.dumps(allowed_models)
        c.execute(self.sql("UPDATE @api_keys SET rpm = ?, tpm = ?, allowed_models = ? WHERE key_id = ?"),
                  (rpm, tpm, models, key_id))

    def _op_routing(self, c: Any, kind: str, aggregate_id: str, defaults: dict[str, Any]) -> None:
        value = json.dumps(defaults) if any(v is not None for v in defaults.values()) else None
        table, column = ("tenants", "tenant_id") if kind == "tenant" else ("api_keys", "key_id")
        c.execute(self.sql(f"UPDATE @{table} SET routing = ? WHERE {column} = ?"), (value, aggregate_id))

    def _op_credential_set(self, c: Any, credential_id: str, tenant: str, provider: str, ciphertext: str,
                           at: datetime) -> None:
        c.execute(
            self.sql("INSERT INTO @provider_credentials (credential_id, tenant, provider, ciphertext, updated_at) "
                     "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, provider) DO UPDATE SET "
                     "ciphertext = excluded.ciphertext, updated_at = excluded.updated_at"),
            (credential_id, tenant, provider, ciphertext, self.time_in(at)),
        )

    def _op_credential_replaced(self, c: Any, credential_id: str, ciphertext: str, at: datetime) -> None:
        c.execute(self.sql("UPDATE @provider_credentials SET ciphertext = ?, updated_at = ? WHERE credential_id = ?"),
                  (ciphertext, self.time_in(at), credential_id))

    def _op_credential_removed(self, c: Any, credential_id: str) -> None:
        # The row stays (empty) so a key set again later still knows its owner.
        c.execute(self.sql("UPDATE @provider_credentials SET ciphertext = '' WHERE credential_id = ?"),
                  (credential_id,))

    # -- lookups the projection needs -----------------------------------------------

    def tenant_name(self, tenant_id: str) -> str | None:
        with self.reading() as c:
            c.execute(self.sql("SELECT name FROM @tenants WHERE tenant_id = ?"), (tenant_id,))
            row = c.fetchone()
        return None if row is None else row["name"]

    def request_owner(self, request_id: str) -> tuple[str, str] | None:
        with self.reading() as c:
            c.execute(self.sql("SELECT tenant, key_id FROM @request_tenants WHERE request_id = ?"), (request_id,))
            row = c.fetchone()
        return None if row is None else (row["tenant"], row["key_id"])

    def credential_owner(self, credential_id: str) -> tuple[str, str] | None:
        with self.reading() as c:
            c.execute(self.sql("SELECT tenant, provider FROM @provider_credentials WHERE credential_id = ?"),
                      (credential_id,))
            row = c.fetchone()
        return None if row is None else (row["tenant"], row["provider"])

    # -- reads ------------------------------------------------------------------------

    def position(self) -> int | None:
        return self.max_tracking_id(APPLICATION_NAME)

    def tenant_state(self, name: str, month: str) -> dict[str, Any] | None:
        """What the admission check needs about a tenant, in one read transaction."""
        with self.reading() as c:
            c.execute(
                self.sql("SELECT t.status, t.rpm, t.tpm, t.monthly_cap, t.routing, a.balance, a.last_event_at "
                         "FROM @tenants t LEFT JOIN @accounts a ON a.account = ? WHERE t.name = ?"),
                ("tenant:" + name, name),
            )
            row = c.fetchone()
            if row is None:
                return None
            c.execute(self.sql("SELECT cost FROM @spend_monthly WHERE tenant = ? AND month = ?"), (name, month))
            spend = c.fetchone()
            c.execute(self.sql("SELECT provider, ciphertext FROM @provider_credentials "
                               "WHERE tenant = ? AND ciphertext <> ''"), (name,))
            credentials = {r["provider"]: r["ciphertext"] for r in c.fetchall()}
        return {
            "status": row["status"],
            "rpm": row["rpm"],
            "tpm": row["tpm"],
            "monthly_cap": _money(row["monthly_cap"]),
            "balance": _money(row["balance"]) or ZERO,
            "last_event_at": _as_datetime(row["last_event_at"]) if row["last_event_at"] is not None else None,
            "month_spend": _money(spend["cost"]) if spend else ZERO,
            "credentials": credentials,
            "routing": _routing(row["routing"]),
        }

    def tenants(self) -> list[dict[str, Any]]:
        with self.reading() as c:
            c.execute(self.sql(
                "SELECT t.name, t.status, t.status_reason, t.rpm, t.tpm, t.monthly_cap, t.routing, t.created_at, "
                "t.updated_at, a.balance FROM @tenants t LEFT JOIN @accounts a ON a.account = 'tenant:' || t.name "
                "ORDER BY t.name"
            ))
            return [_tenant_row(r) for r in c.fetchall()]

    def tenant(self, name: str, month: str) -> dict[str, Any] | None:
        with self.reading() as c:
            c.execute(self.sql(
                "SELECT t.name, t.status, t.status_reason, t.rpm, t.tpm, t.monthly_cap, t.routing, t.created_at, "
                "t.updated_at, a.balance FROM @tenants t LEFT JOIN @accounts a ON a.account = 'tenant:' || t.name "
                "WHERE t.name = ?"
            ), (name,))
            row = c.fetchone()
            if row is None:
                return None
            c.execute(self.sql("SELECT cost FROM @spend_monthly WHERE tenant = ? AND month = ?"), (name, month))
            spend = c.fetchone()
            c.execute(self.sql("SELECT status, COUNT(*) AS n FROM @api_keys WHERE tenant = ? GROUP BY status"),
                      (name,))
            keys = {r["status"]: r["n"] for r in c.fetchall()}
            c.execute(self.sql("SELECT provider FROM @provider_credentials WHERE tenant = ? AND ciphertext <> '' "
                               "ORDER BY provider"),
                      (name,))
            providers = [r["provider"] for r in c.fetchall()]
        detail = _tenant_row(row)
        detail.update(month=month, month_spend=money_text(_money(spend["cost"]) if spend else ZERO),
                      keys={"active": keys.get("active", 0), "revoked": keys.get("revoked", 0)},
                      provider_keys=providers)
        return detail

    def keys(self, tenant: str) -> list[dict[str, Any]]:
        with self.reading() as c:
            c.execute(self.sql(
                "SELECT key_id, tenant, prefix, label, status, rpm, tpm, allowed_models, routing, created_at, "
                "revoked_at, last_used_at FROM @api_keys WHERE tenant = ? ORDER BY created_at, key_id"
            ), (tenant,))
            return [_key_row(r) for r in c.fetchall()]

    def key(self, key_id: str) -> dict[str, Any] | None:
        with self.reading() as c:
            c.execute(self.sql(
                "SELECT key_id, tenant, prefix, label, status, rpm, tpm, allowed_models, routing, created_at, "
                "revoked_at, last_used_at FROM @api_keys WHERE key_id = ?"
            ), (key_id,))
            row = c.fetchone()
        return None if row is None else _key_row(row)

    def entries(self, tenant: str | None = None, kind: str | None = None, account: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
        conditions, params = [], []
        for column, value in (("tenant", tenant), ("kind", kind), ("account", account)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        tail = ""
        if limit is not None:
            tail = " LIMIT ?"
            params.append(int(limit))
        with self.reading() as c:
            c.execute(self.sql(
                f"SELECT event_id, position, account, tenant, amount, kind, reference, at FROM @entries{where} "
                f"ORDER BY entry_id{tail}"
            ), tuple(params))
            return [
                {"event_id": r["event_id"], "position": r["position"], "account": r["account"], "tenant": r["tenant"],
                 "amount": _money(r["amount"]), "kind": r["kind"], "reference": r["reference"],
                 "at": _as_datetime(r["at"])}
                for r in c.fetchall()
            ]

    def balances(self) -> dict[str, Decimal]:
        """Every account's projected balance."""
        with self.reading() as c:
            c.execute(self.sql("SELECT account, balance FROM @accounts"))
            return {r["account"]: _money(r["balance"]) or ZERO for r in c.fetchall()}

    def usage_rows(self, tenant: str, start: date, end: date) -> list[dict[str, Any]]:
        """The tenant's daily usage rows with start <= day < end."""
        with self.reading() as c:
            c.execute(self.sql(
                "SELECT day, key_id, model, requests, input_tokens, output_tokens, cached_tokens, estimated, cost "
                "FROM @usage_daily WHERE tenant = ? AND day >= ? AND day < ? ORDER BY day, key_id, model"
            ), (tenant, self.day_in(start), self.day_in(end)))
            return [
                {"day": r["day"] if isinstance(r["day"], date) else date.fromisoformat(r["day"]),
                 "key_id": r["key_id"], "model": r["model"], "requests": r["requests"],
                 "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
                 "cached_tokens": r["cached_tokens"], "estimated": r["estimated"], "cost": _money(r["cost"])}
                for r in c.fetchall()
            ]

    # -- reads for audit (ledger/audit/verify.py): sums done in Python, in Decimal ------

    def entry_sums(self) -> dict[str, Decimal]:
        """Each account's entries summed (what its balance must equal)."""
        sums: dict[str, Decimal] = {}
        with self.reading() as c:
            c.execute(self.sql("SELECT account, amount FROM @entries"))
            for r in c.fetchall():
                sums[r["account"]] = sums.get(r["account"], ZERO) + Decimal(str(r["amount"]))
        return sums

    def usage_all(self, tenant: str | None = None, start: date | None = None,
                  end: date | None = None) -> list[dict[str, Any]]:
        """Every daily usage row (of one tenant, with start <= day < end, when given)."""
        conditions, params = [], []
        for clause, value in (("tenant = ?", tenant), ("day >= ?", start), ("day < ?", end)):
            if value is not None:
                conditions.append(clause)
                params.append(self.day_in(value) if isinstance(value, date) else value)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self.reading() as c:
            c.execute(self.sql(
                "SELECT tenant, day, key_id, model, requests, input_tokens, output_tokens, cached_tokens, estimated, "
                f"cost FROM @usage_daily{where}"
            ), tuple(params))
            return [
                {"tenant": r["tenant"], "day": r["day"] if isinstance(r["day"], date) else date.fromisoformat(r["day"]),
                 "key_id": r["key_id"], "model": r["model"], "requests": r["requests"],
                 "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
                 "cached_tokens": r["cached_tokens"], "estimated": r["estimated"], "cost": _money(r["cost"])}
                for r in c.fetchall()
            ]

    def spend_all(self, tenant: str | None = None) -> dict[tuple[str, str], Decimal]:
        """Monthly spend: (tenant, YYYY-MM) -> cost."""
        where, params = (" WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        with self.reading() as c:
            c.execute(self.sql(f"SELECT tenant, month, cost FROM @spend_monthly{where}"), params)
            return {(r["tenant"], r["month"]): _money(r["cost"]) or ZERO for r in c.fetchall()}


class SQLiteTenancyView(TenancyView, SQLiteTrackingRecorder):
    dialect = "sqlite"

    def tracking_table(self) -> str:
        return "tracking"

    @contextmanager
    def writing(self) -> Iterator[Any]:
        # BEGIN IMMEDIATE: take the write lock first (waiting up to the busy timeout),
        # rather than fail when a read transaction cannot be upgraded.
        with self.datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            cursor = raw.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield SQLiteCursor(cursor)
            except BaseException:
                raw.rollback()
                raise
            raw.commit()

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        db_name = self.datastore.pool.db_name
        if self.datastore.pool.is_sqlite_memory_mode:
            yield
            return
        fd = os.open(db_name + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class PostgresTenancyView(TenancyView, PostgresTrackingRecorder):
    dialect = "postgres"

    @property
    def schema(self) -> str | None:
        return self.datastore.schema

    def tracking_table(self) -> str:
        return f'"{self.datastore.schema}"."{self.tracking_table_name}"'

    def money_in(self, amount: Decimal) -> Any:
        return amount

    def time_in(self, at: datetime) -> Any:
        return at

    def day_in(self, day: date) -> Any:
        return day

    def insert_rows(self, c: Any, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple[Any, ...]],
                    on_conflict: str = "") -> None:
        """One statement whatever the number of rows: a column per array, `unnest`ed in
        row order. psycopg's executemany drove a pipeline in Python per row: 2.8 vs 1.0 ms
        of CPU for a batch of 75 requests (bench/README.md, session 18)."""
        names = ", ".join(name for name, _ in columns)
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)  # binary: no text quoting per value
        c.execute(self.sql(f"INSERT INTO @{table} ({names}) SELECT * FROM unnest({arrays}) {on_conflict}"),
                  [list(column) for column in zip(*rows, strict=True)])

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        key = int.from_bytes(hashlib.sha256(f"twoapi-schema:{self.schema}".encode()).digest()[:8], "big", signed=True)
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


# -- row helpers -------------------------------------------------------------------

# (column, PostgreSQL type) of the rows a batch inserts, in insert order.
_REQUEST_TENANT_COLUMNS = (("request_id", "text"), ("tenant", "text"), ("key_id", "text"),
                           ("received_at", "timestamptz"))
_ENTRY_COLUMNS = (("event_id", "text"), ("position", "bigint"), ("account", "text"), ("tenant", "text"),
                  ("amount", "numeric"), ("kind", "text"), ("reference", "text"), ("at", "timestamptz"))


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value)


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _time_text(value: Any) -> str | None:
    return None if value is None else _iso(_as_datetime(value))


def _tenant_row(r: Any) -> dict[str, Any]:
    return {
        "name": r["name"], "status": r["status"], "status_reason": r["status_reason"],
        "limits": {"rpm": r["rpm"], "tpm": r["tpm"],
                   "monthly_cap": None if r["monthly_cap"] is None else money_text(_money(r["monthly_cap"]))},
        "balance": money_text(_money(r["balance"]) or ZERO),
        "routing": _routing_shown(r["routing"]),
        "created_at": _time_text(r["created_at"]), "updated_at": _time_text(r["updated_at"]),
    }


def _key_row(r: Any) -> dict[str, Any]:
    return {
        "key_id": r["key_id"], "tenant": r["tenant"], "prefix": r["prefix"], "label": r["label"],
        "status": r["status"],
        "limits": {"rpm": r["rpm"], "tpm": r["tpm"],
                   "allowed_models": None if r["allowed_models"] is None else json.loads(r["allowed_models"])},
        "routing": _routing_shown(r["routing"]),
        "created_at": _time_text(r["created_at"]), "revoked_at": _time_text(r["revoked_at"]),
        "last_used_at": _time_text(r["last_used_at"]),
    }


ROUTING_FIELDS = ("strategy", "fallbacks", "max_attempts", "timeout_ms", "max_cost")


def _routing(value: Any) -> dict[str, Any] | None:
    """Routing defaults as stored (Tenant/ApiKey.RoutingSet); None: none set."""
    return None if value is None else json.loads(value)


def _routing_shown(value: Any) -> dict[str, Any]:
    """Routing defaults as the Admin API and the CLI show them: every field, null = inherit."""
    return {name: (_routing(value) or {}).get(name) for name in ROUTING_FIELDS}
