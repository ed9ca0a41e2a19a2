"""Operations on the analytics store from the command line: status, migrate, rebuild.

With chDB these need the data path, so they work while no other process holds it
(the gateway stopped); `status` then falls back to asking the running gateway
(`GET /admin/analytics/status`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from analytics.config import AnalyticsConfig
from analytics.projection import NAME, AnalyticsProjection
from analytics.store import AnalyticsStore, StoreUnavailable, migrate
from ledger.application import Ledger

DATA_TABLES = ("requests", "attempts", "ledger_events", "usage_hourly", "usage_daily", "provider_hourly",
               "latency_hourly", "attempts_hourly", "projection_state")


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
