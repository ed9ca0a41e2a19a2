"""Operations on the analytics store from the command line: status, migrate, rebuild.

With chDB these need the data path, so they work while no other process holds it
(the gateway stopped); `status` then falls back to asking the running gateway
(`GET /admin/analytics/status`).

`projection_line` shapes the analytics projection's status as a line of
`twoapi projections status` and `GET /admin/projections`, beside the tenancy
projection's (same keys: name, position, head, pending_events, lag_seconds; plus
state and, when there is something to say, detail). Analytics off, or its store or
worker unreachable, is a line saying so, never a failure of the command.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from analytics.config import AnalyticsConfig
from analytics.projection import NAME, AnalyticsProjection
from analytics.store import AnalyticsStore, StoreUnavailable, migrate
from ledger.application import Ledger

DATA_TABLES = ("requests", "attempts", "ledger_events", "cost_corrections", "usage_hourly", "usage_daily",
               "provider_hourly", "latency_hourly", "attempts_hourly", "projection_state")


def store_status(config: AnalyticsConfig, database_url: str | None) -> dict[str, Any]:
    """Position, ledger head and lag, read from the store and the ledger directly."""
    store = AnalyticsStore.open(config)
    ledger = Ledger.open(database_url, config.data_dir)
    try:
        migrate(store)
        projection = AnalyticsProjection(ledger, store)
        position = projection.position()
        head = projection.head()
        oldest = projection.oldest_unshipped(position.position) if head > position.position else None
        return {
            "name": NAME, "engine": store.engine, "store": store.where, "position": position.position,
            "in_flight_to": position.in_flight_to if position.pending else None,
            "head": head, "lag_events": max(head - position.position, 0),
            "lag_seconds": round((datetime.now(UTC) - oldest).total_seconds(), 3) if oldest else 0.0,
            "state": "not running (read from the store)",
        }
    finally:
        ledger.close()
        store.close()


def gateway_status(gateway_url: str, admin_token: str | None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {admin_token}"} if admin_token else {}
    response = httpx.get(gateway_url.rstrip("/") + "/admin/analytics/status", headers=headers, timeout=10)
    response.raise_for_status()
    return response.json()


def status(config: AnalyticsConfig, database_url: str | None, gateway_url: str,
           admin_token: str | None) -> dict[str, Any]:
    try:
        return store_status(config, database_url)
    except StoreUnavailable as held:
        try:
            return {**gateway_status(gateway_url, admin_token), "via": gateway_url}
        except httpx.HTTPError as error:
            raise StoreUnavailable(f"{held}; and the gateway at {gateway_url} did not answer: {error}") from error


def projection_line(report: Mapping[str, Any], head: int | None = None) -> dict[str, Any]:
    """A status report (the projection runner's, the store's or a gateway's) as a
    line beside the tenancy projection's. `head`: the ledger's, when the report has none."""
    position = report.get("position")
    head = report.get("head") or head
    lag = report.get("lag_events")
    if lag is None and position is not None and head is not None:
        lag = max(int(head) - int(position), 0)
    line = {"name": NAME, "position": position, "head": head, "pending_events": lag, "lag_events": lag,
            "lag_seconds": report.get("lag_seconds"), "state": report.get("state") or "unknown",
            "engine": report.get("engine")}
    if report.get("last_error"):
        line["detail"] = report["last_error"]
    return line


def unavailable_line(state: str, detail: str) -> dict[str, Any]:
    """The analytics projection's line when its status cannot be had: `off` or `unavailable`."""
    return {"name": NAME, "position": None, "head": None, "pending_events": None, "lag_events": None,
            "lag_seconds": None, "state": state, "detail": detail}


def cli_projection_line(data_dir: Path, database_url: str | None, gateway_url: str, admin_token: str | None,
                        env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The analytics line of `twoapi projections status`: from the store when no
    process holds it, else from the gateway (as `twoapi analytics status`). Never raises."""
    try:
        config = AnalyticsConfig.from_env(data_dir, env)
    except ValueError as error:
        return unavailable_line("unavailable", str(error))
    if (env.get("TWOAPI_ANALYTICS") or "").lower() == "off":
        return unavailable_line("off", "analytics is off (TWOAPI_ANALYTICS=off)")
    try:
        if config.engine == "chdb" and not config.chdb_path.exists():
            # No store on this data dir: a gateway may still run analytics elsewhere.
            try:
                report = gateway_status(gateway_url, admin_token)
            except (httpx.HTTPError, ValueError):
                return unavailable_line("off", f"no analytics store in {config.chdb_path} and no gateway answering at "
                                        f"{gateway_url}: analytics has not run here (`twoapi serve` runs it; "
                                        "docs/analytics.md)")
            return _gateway_line(report, gateway_url)
        report = status(config, database_url, gateway_url, admin_token)
        return _gateway_line(report, gateway_url) if "via" in report else projection_line(report)
    except StoreUnavailable as error:
        return unavailable_line("unavailable", str(error))
    except Exception as error:  # a status line must not take the command down
        return unavailable_line("unavailable", f"{type(error).__name__}: {error}")


def _gateway_line(report: Mapping[str, Any], gateway_url: str) -> dict[str, Any]:
    if report.get("state") == "off":
        return {**unavailable_line("off", f"analytics is off in the gateway at {gateway_url}"), "via": gateway_url}
    return {**projection_line(report), "via": gateway_url}


def migrate_store(config: AnalyticsConfig) -> list[str]:
    store = AnalyticsStore.open(config)
    try:
        return migrate(store)
    finally:
        store.close()


def rebuild(config: AnalyticsConfig) -> None:
    """Empty the analytics tables and the projection's position: the next projection
    run ships the whole ledger again (the ledger is the source of truth)."""
    store = AnalyticsStore.open(config)
    try:
        migrate(store)
        for table in DATA_TABLES:
            store.command(f"TRUNCATE TABLE IF EXISTS {table}")  # names from the fixed tuple above
    finally:
        store.close()
