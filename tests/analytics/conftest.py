"""A gateway that owns its analytics store (chDB in its data dir), tenants with keys,
and helpers to read the analytics API and the ledger.

chDB hosts one data path per process at a time, so these fixtures start one
analytics-owning gateway at a time and close it (and its engine) at teardown.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from analytics.config import AnalyticsConfig
from analytics.store import AnalyticsStore, migrate
from ledger.application import Ledger
from tests.support import RunningGateway, gateway_settings, start_gateway

ADMIN_TOKEN = "test-admin-token-0123456789"
# Hostile names: quotes, SQL, comments, unicode. Queries bind them as parameters.
HOSTILE_TENANT = "o'brien\"; DROP TABLE requests; --"
TENANTS = ("acme", "globex", HOSTILE_TENANT)


@pytest.fixture
def analytics_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWOAPI_ANALYTICS_URL", "CLICKHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWOAPI_ANALYTICS", "owner")  # the gateway in the test owns its store
    monkeypatch.setenv("TWOAPI_ANALYTICS_POLL_S", "0.05")
    monkeypatch.setenv("TWOAPI_ANALYTICS_RETRY_MAX_S", "0.5")


def seed_tenants(database_url: str | None, data_dir: Path, tenants: tuple[str, ...] = TENANTS,
                 keys_per_tenant: int = 2) -> dict[str, list[str]]:
    """Tenants with $50 of credits and some keys; {tenant: [key secrets]}."""
    ledger = Ledger.open(database_url, data_dir)
    try:
        keys: dict[str, list[str]] = {}
        for name in tenants:
            ledger.create_tenant(name)
            ledger.add_credits(name, Decimal("50.00"), reference="test credits")
            keys[name] = [ledger.issue_key(name, label=f"key-{i}").secret for i in range(keys_per_tenant)]
        return keys
    finally:
        ledger.close()


@dataclass
class AnalyticsGateway:
    gateway: RunningGateway
    keys: dict[str, list[str]]

    @property
    def url(self) -> str:
        return self.gateway.url

    def admin(self, query: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}/admin/analytics/{query}", params=params,
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def tenant(self, key: str, query: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}/v1/analytics/{query}", params=params,
                         headers={"authorization": f"Bearer {key}"}, timeout=30)

    def status(self) -> dict[str, Any]:
        response = self.admin("status")
        response.raise_for_status()
        return response.json()

    def wait_caught_up(self, timeout: float = 30.0) -> dict[str, Any]:
        """Until the projection has shipped everything the ledger holds right now."""
        ledger = Ledger.open(self.gateway.settings.database_url, self.gateway.settings.data_dir)
        try:
            head = int(ledger.recorder.max_notification_id() or 0)
        finally:
            ledger.close()
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("position", 0) >= head and status.get("state") == "caught_up":
                return status
            time.sleep(0.05)
        raise AssertionError(f"the projection did not catch up with {head}: {status}")


def start_analytics_gateway(tmp_path: Path, simulator_url: str, database_url: str | None,
                            keys: dict[str, list[str]] | None = None, **overrides: Any) -> AnalyticsGateway:
    settings = replace(gateway_settings(tmp_path / "data", simulator_url, database_url), admin_token=ADMIN_TOKEN,
                       **overrides)
    if keys is None:
        keys = seed_tenants(database_url, settings.data_dir)
    return AnalyticsGateway(start_gateway(settings), keys)


@pytest.fixture
def analytics_gateway(tmp_path: Path, simulator, store_url: str | None, analytics_env: None
                      ) -> Iterator[AnalyticsGateway]:
    """On the SQLite ledger and on PostgreSQL (see tests/conftest.py `store_url`)."""
    running = start_analytics_gateway(tmp_path, simulator.url, store_url)
    yield running
    running.gateway.stop()


@pytest.fixture
def sqlite_analytics_gateway(tmp_path: Path, simulator, analytics_env: None) -> Iterator[AnalyticsGateway]:
    running = start_analytics_gateway(tmp_path, simulator.url, None)
    yield running
    running.gateway.stop()


def ledger_totals_by_request(database_url: str | None, data_dir: Path, request_ids: list[str]
                             ) -> dict[str, dict[str, Any]]:
    """Per-tenant totals read from the ledger, request by request (as an auditor
    would, with `twoapi ledger show`), independently of the analytics code."""
    from ledger.ids import parse_request_id

    totals: dict[str, dict[str, Any]] = {}
    ledger = Ledger.open(database_url, data_dir)
    try:
        for request_id in request_ids:
            events = ledger.event_dicts(parse_request_id(request_id))
            tenant = events[0]["tenant"]
            row = totals.setdefault(tenant, {"requests": 0, "input_tokens": 0, "output_tokens": 0,
                                             "cached_tokens": 0, "cost": Decimal(0)})
            row["requests"] += 1
            for event in events:
                if event["event"] == "UsageMetered":
                    row["cost"] += Decimal(event["cost"])
                    for field in ("input_tokens", "output_tokens", "cached_tokens"):
                        row[field] += event[field]
    finally:
        ledger.close()
    return totals


# -- an empty SQLite ledger and chDB store, for projection tests

@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(None, tmp_path / "ledger")
    yield opened
    opened.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AnalyticsStore]:
    opened = AnalyticsStore.open(AnalyticsConfig(data_dir=tmp_path / "analytics-data"))
    migrate(opened)
    yield opened
    opened.close()
