"""Shared fixtures: the provider simulator, real stores, and a running gateway.

PostgreSQL and Redis tests run for real: when a service is missing they fail (they
never skip), so CI cannot pass without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.bootstrap import ensure_demo_tenant
from ledger.application import Ledger
from tests.support import (
    POSTGRES_BASE_URL,
    RunningGateway,
    drop_schema,
    gateway_settings,
    postgres_schema_url,
    start_gateway,
)

DEMO_KEY = "2api_test_demo_key_0123456789abcdefghijklmnopqrstu"


@pytest.fixture(scope="session")
def simulator() -> Iterator[object]:
    from simulator.app import start_in_thread

    sim = start_in_thread(port=0)
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def postgres_available() -> None:
    try:
        with psycopg.connect(POSTGRES_BASE_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is required at {POSTGRES_BASE_URL}: {error}")


@pytest.fixture
def postgres_url(postgres_available: None) -> Iterator[str]:
    url, schema = postgres_schema_url()
    yield url
    drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Each test using it runs once on the embedded SQLite ledger and once on PostgreSQL."""
    if request.param == "sqlite":
        yield None
        return
    yield request.getfixturevalue("postgres_url")


def open_ledger(database_url: str | None, data_dir: Path) -> Ledger:
    return Ledger.open(database_url, data_dir)


@pytest.fixture
def gateway(tmp_path: Path, simulator, store_url: str | None) -> Iterator[RunningGateway]:
    settings = gateway_settings(tmp_path / "data", simulator.url, store_url)
    ledger = open_ledger(store_url, settings.data_dir)
    ensure_demo_tenant(ledger, DEMO_KEY)
    ledger.close()
    running = start_gateway(settings)
    yield running
    running.stop()


@pytest.fixture
def ledger_of(gateway: RunningGateway) -> Iterator[Ledger]:
    """A second reader of the gateway's ledger, as an auditor would open it."""
    ledger = open_ledger(gateway.settings.database_url, gateway.settings.data_dir)
    yield ledger
    ledger.close()
