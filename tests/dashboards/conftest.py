"""A gateway owning its analytics store, with traffic from the demo generator (every
provider, streams, fallbacks, a fault or two), for the dashboard pages to show.

Package-scoped: the seeding is the slow part, and the pages only read. The expected
values come from the ledger, read through the eventsourcing library's own decoding
(not the analytics code)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from analytics.traffic import DemoKey, run_traffic
from ledger.application import Ledger
from tests.analytics.conftest import ADMIN_TOKEN, AnalyticsGateway, seed_tenants, start_analytics_gateway

TENANTS = ("acme", "globex")


@dataclass
class Seeded:
    gw: AnalyticsGateway
    totals: dict[str, dict[str, Any]]  # per tenant, from the ledger
    providers: dict[str, int]  # requests per provider first tried, from the ledger
    usage: dict[tuple[str, str], dict[str, Any]]  # per (tenant, model): usage events and their cost


def ledger_truth(database_url: str | None, data_dir) -> tuple[dict[str, dict[str, Any]], dict[str, int],
                                                             dict[tuple[str, str], dict[str, Any]]]:
    ledger = Ledger.open(database_url, data_dir)
    totals: dict[str, dict[str, Any]] = {}
    owner: dict[Any, str] = {}
    first_provider: dict[Any, str] = {}
    usage: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        start = 0
        while True:
            page = ledger.recorder.select_notifications(start, 1000, inclusive_of_start=False)
            for notification in page:
                event = ledger.mapper.to_domain_event(notification)
                name = type(event).__qualname__
                if name == "Request.Received":
                    owner[event.originator_id] = event.tenant
                    row = totals.setdefault(event.tenant, {"requests": 0, "errors": 0, "cost": Decimal(0),
                                                           "output_tokens": 0, "events": 0})
                    row["requests"] += 1
                if event.originator_id in owner:
                    totals[owner[event.originator_id]]["events"] += 1
                if name == "Request.AttemptStarted" and event.attempt == 1:
                    first_provider[event.originator_id] = event.provider
                if name == "Request.UsageMetered":
                    totals[owner[event.originator_id]]["cost"] += Decimal(event.cost)
                    totals[owner[event.originator_id]]["output_tokens"] += event.output_tokens
                    line = usage.setdefault((owner[event.originator_id], event.model), {"events": 0,
                                                                                        "cost": Decimal(0)})
                    line["events"] += 1
                    line["cost"] += Decimal(event.cost)
                if name == "Request.Failed":
                    totals[owner[event.originator_id]]["errors"] += 1
            if len(page) < 1000:
                break
            start = page[-1].id
    finally:
        ledger.close()
    providers: dict[str, int] = {}
    for provider in first_provider.values():
        providers[provider] = providers.get(provider, 0) + 1
    return totals, providers, usage


@pytest.fixture(scope="package")
def seeded(tmp_path_factory: pytest.TempPathFactory, simulator) -> Iterator[Seeded]:
    saved = {k: os.environ.get(k) for k in ("TWOAPI_ANALYTICS", "TWOAPI_ANALYTICS_URL", "CLICKHOUSE_URL",
                                            "TWOAPI_ANALYTICS_POLL_S", "TWOAPI_GATEWAY_URL", "TWOAPI_ADMIN_TOKEN")}
    for name in ("TWOAPI_ANALYTICS_URL", "CLICKHOUSE_URL"):
        os.environ.pop(name, None)
    os.environ["TWOAPI_ANALYTICS"] = "owner"  # the gateway in the test owns its store
    os.environ["TWOAPI_ANALYTICS_POLL_S"] = "0.05"
    tmp = tmp_path_factory.mktemp("dashboards")
    keys = seed_tenants(None, tmp / "data", TENANTS, keys_per_tenant=2)
    gw = start_analytics_gateway(tmp, simulator.url, None, keys=keys)
    try:
        demo_keys = [DemoKey(t, f"key-{i}", k) for t, ks in keys.items() for i, k in enumerate(ks)]
        asyncio.run(run_traffic(gw.url, demo_keys, simulator_url=simulator.url, requests=60, rate=0,
                                concurrency=4, fault_every_s=0.5, seed_value=11))
        gw.wait_caught_up()
        totals, providers, usage = ledger_truth(None, tmp / "data")
        os.environ["TWOAPI_GATEWAY_URL"] = gw.url
        os.environ["TWOAPI_ADMIN_TOKEN"] = ADMIN_TOKEN
        yield Seeded(gw, totals, providers, usage)
    finally:
        gw.gateway.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
