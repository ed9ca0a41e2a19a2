"""What a gateway process holds for analytics: the queries, the projection, status.

`open_analytics` picks by role (see analytics/config.py):

* `LocalAnalytics`: opens the store for queries (lazily, and again after it went
  away) and, as `owner`, runs the projection thread. Every failure of the store is
  `AnalyticsUnavailable`, which the API answers with a 503; chat never touches it.
* `RemoteAnalytics`: forwards queries to the analytics worker that owns the store
  (`twoapi analytics run`), so gateway workers never load chDB.
* `DisabledAnalytics`: analytics is off here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import httpx

from analytics import admin, queries
from analytics.config import AnalyticsConfig
from analytics.metrics import default_meter_provider, register_gauges
from analytics.projection import NAME, ProjectionRunner
from analytics.reconcile import ledger_totals
from analytics.store import AnalyticsStore, StoreUnavailable
from ledger.application import Ledger

REOPEN_AFTER_S = 1.0  # after a failed open, wait this long before trying again


class AnalyticsUnavailable(Exception):
    """The analytics store (or the worker owning it) cannot answer right now."""


class Analytics(Protocol):
    role: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def query(self, name: str, params: Mapping[str, str], scope: queries.Scope) -> dict[str, Any]: ...
    async def status(self) -> dict[str, Any]: ...
    async def reconcile(self, tenant: str, ledger: Ledger) -> dict[str, Any]: ...


class LocalAnalytics:
    def __init__(self, config: AnalyticsConfig, database_url: str | None, meter_provider: Any = None) -> None:
        self.config = config
        self.role = config.role
        self.database_url = database_url
        self.runner = ProjectionRunner(config, database_url) if config.projects else None
        self._store: AnalyticsStore | None = None
        self._failed_at = 0.0
        self._last_error = ""
        self._open_lock = asyncio.Lock()
        self._meter_provider = meter_provider if meter_provider is not None else default_meter_provider()

    async def start(self) -> None:
        if self.runner is not None:
            self.runner.start()
        if self._meter_provider is not None:
            register_gauges(self._meter_provider, self.projection_status)

    async def stop(self) -> None:
        if self.runner is not None:
            await asyncio.to_thread(self.runner.stop)
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None
        if self._meter_provider is not None and hasattr(self._meter_provider, "shutdown"):
            self._meter_provider.shutdown()

    async def query(self, name: str, params: Mapping[str, str], scope: queries.Scope) -> dict[str, Any]:
        store = await self._open()
        try:
            return await asyncio.to_thread(queries.run, store, name, params, scope)
        except StoreUnavailable as error:
            await self._drop(store, str(error))
            raise AnalyticsUnavailable(str(error)) from error

    def projection_status(self) -> dict[str, Any]:
        if self.runner is not None:
            return self.runner.status.as_dict()
        return {"name": NAME, "engine": self.config.engine, "state": "not_here",
                "last_error": "this process does not run the analytics projection"}

    async def status(self) -> dict[str, Any]:
        status = self.projection_status()
        if self.runner is None:
            # The projection runs elsewhere; its position is in the store.
            try:
                store = await self._open()
                position = await asyncio.to_thread(
                    store.scalar, "SELECT argMax(position, version) FROM projection_state WHERE name = {n:String}",
                    {"n": NAME})
                status = {**status, "position": int(position or 0)}
            except (AnalyticsUnavailable, StoreUnavailable) as error:
                status = {**status, "last_error": str(error)}
        return {**status, "role": self.role}

    async def reconcile(self, tenant: str, ledger: Ledger) -> dict[str, Any]:
        """Ledger vs analytics for one tenant, at one ledger position: the ledger is
        read up to the position the projection has shipped, so a lagging projection
        does not show as a difference."""
        status = await self.status()
        position = int(status.get("position") or 0)
        ledger_side = await asyncio.to_thread(ledger_totals, ledger, tenant, position or None)
        answer = await self.query("totals", {"since": "1970-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"},
                                  queries.Scope(tenant))
        budget = await self.query("budget", {"since": "1h"}, queries.Scope(tenant))
        rows = answer["data"]
        analytics_side = rows[0] if rows else {"requests": 0, "input_tokens": 0, "output_tokens": 0,
                                               "cached_tokens": 0, "cost": 0}
        summary = budget.get("summary", {})
        ledger_dict = ledger_side.as_dict()
        compared = {}
        for field in ("requests", "input_tokens", "output_tokens", "cached_tokens", "cost"):
            compared[field] = {"ledger": ledger_dict[field], "analytics": analytics_side.get(field, 0)}
        compared["balance"] = {"ledger": ledger_side.balance, "analytics": summary.get("balance")}
        for row in compared.values():
            row["match"] = _same(row["ledger"], row["analytics"])
        return {"tenant": tenant, "position": position, "lines": compared,
                "match": all(row["match"] for row in compared.values())}

    async def _open(self) -> AnalyticsStore:
        if self._store is not None:
            return self._store
        async with self._open_lock:
            if self._store is not None:
                return self._store
            projection_up = self.runner is not None and self.runner.status.state in ("running", "caught_up")
            if time.monotonic() - self._failed_at < REOPEN_AFTER_S and not projection_up:
                raise AnalyticsUnavailable(self._last_error)
            try:
                self._store = await asyncio.to_thread(AnalyticsStore.open, self.config)
            except StoreUnavailable as error:
                self._failed_at, self._last_error = time.monotonic(), str(error)
                raise AnalyticsUnavailable(str(error)) from error
            return self._store

    async def _drop(self, store: AnalyticsStore, error: str) -> None:
        if self._store is store:
            self._store = None
            self._failed_at, self._last_error = time.monotonic(), error
            await asyncio.to_thread(store.close)


class RemoteAnalytics:
    """Queries answered by the analytics worker (which owns the store) over HTTP."""

    def __init__(self, config: AnalyticsConfig, admin_token: str | None) -> None:
        assert config.remote_url is not None
        self.role = "remote"
        self.url = config.remote_url.rstrip("/")
        token = os.environ.get("TWOAPI_ANALYTICS_TOKEN") or admin_token
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=60)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def query(self, name: str, params: Mapping[str, str], scope: queries.Scope) -> dict[str, Any]:
        forwarded = dict(params)
        if scope.scoped:
            forwarded["scope_tenant"] = scope.tenant or ""
        return await self._get(f"/internal/analytics/{name}", forwarded)

    async def status(self) -> dict[str, Any]:
        return {**await self._get("/internal/analytics/status", {}), "role": "remote", "worker": self.url}

    async def reconcile(self, tenant: str, ledger: Ledger) -> dict[str, Any]:
        return await self._get("/internal/analytics/reconciliation", {"tenant": tenant})

    async def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        assert self._client is not None
        try:
            response = await self._client.get(path, params=params)
        except httpx.HTTPError as error:
            raise AnalyticsUnavailable(f"the analytics worker at {self.url} is not answering: {error}") from error
        body = response.json()
        if response.status_code == 200:
            return body
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if response.status_code == 400:
            raise queries.QueryError(error.get("param") or "", error.get("message") or "bad parameters")
        if response.status_code == 404:
            raise KeyError(path)
        raise AnalyticsUnavailable(error.get("message") or f"analytics worker answered {response.status_code}")


OFF = ("analytics is off in this process (`twoapi serve` runs an analytics worker; otherwise set "
       "TWOAPI_ANALYTICS=owner, or TWOAPI_ANALYTICS_URL: docs/analytics.md)")


class DisabledAnalytics:
    role = "off"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def query(self, name: str, params: Mapping[str, str], scope: queries.Scope) -> dict[str, Any]:
        raise AnalyticsUnavailable(OFF)

    async def status(self) -> dict[str, Any]:
        return {"name": NAME, "role": "off", "state": "off"}

    async def reconcile(self, tenant: str, ledger: Ledger) -> dict[str, Any]:
        raise AnalyticsUnavailable(OFF)


async def projection_line(analytics: Analytics, ledger: Ledger, timeout: float = 5.0) -> dict[str, Any]:
    """The analytics projection's line of GET /admin/projections (beside the tenancy
    projection's): position, ledger head, lag, state; or why there is none (analytics
    off here, the store or the worker not answering). Never raises."""
    try:
        report = await asyncio.wait_for(analytics.status(), timeout)
    except AnalyticsUnavailable as error:
        return admin.unavailable_line("unavailable", str(error))
    except TimeoutError:
        return admin.unavailable_line("unavailable", f"the analytics status did not come within {timeout:g} s")
    except Exception as error:  # a status line must not take the endpoint down
        return admin.unavailable_line("unavailable", f"{type(error).__name__}: {error}")
    if report.get("state") == "off" or report.get("role") == "off":
        return admin.unavailable_line("off", OFF)
    head = None
    if not report.get("head"):
        try:
            head = await asyncio.to_thread(ledger.recorder.max_notification_id)
        except Exception:  # the ledger's own status line says what is wrong with it
            head = None
    return {**admin.projection_line(report, int(head) if head is not None else None), "role": report.get("role")}


def open_analytics(config: AnalyticsConfig, database_url: str | None, admin_token: str | None) -> Analytics:
    if config.role == "off":
        return DisabledAnalytics()
    if config.role == "remote":
        return RemoteAnalytics(config, admin_token)
    return LocalAnalytics(config, database_url)


def _same(a: Any, b: Any) -> bool:
    """Equal as exact numbers (the ledger gives Decimals and ints, the store the same
    or None when it has nothing)."""
    try:
        return Decimal(str(a if a is not None else 0)) == Decimal(str(b if b is not None else 0))
    except InvalidOperation:
        return a == b
