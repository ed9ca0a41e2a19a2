"""One gateway per test module over the session's simulator (SQLite ledger: these
tests are about the API surface; the metering tests also run on PostgreSQL through
the `gateway` fixture), the openai SDK pointed at it, and the simulator's request log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.bootstrap import ensure_demo_tenant
from ledger.application import Ledger
from ledger.ids import parse_request_id
from tests.conftest import DEMO_KEY
from tests.support import RunningGateway, gateway_settings, start_gateway


class Sim:
    def __init__(self, url: str) -> None:
        self.url = url

    def requests(self, last: int) -> list[dict[str, Any]]:
        return httpx.get(self.url + "/_sim/requests", params={"last": last}).json()["requests"]

    def last(self) -> dict[str, Any]:
        return self.requests(1)[0]

    def fault(self, **spec: Any) -> None:
        httpx.post(self.url + "/_sim/faults", json=spec).raise_for_status()

    def reset(self) -> None:
        httpx.post(self.url + "/_sim/reset").raise_for_status()


@pytest.fixture
def sim(simulator) -> Iterator[Sim]:
    control = Sim(simulator.url)
    control.reset()
    yield control
    control.reset()


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory, simulator) -> Iterator[RunningGateway]:
    data: Path = tmp_path_factory.mktemp("surface") / "data"
    settings = gateway_settings(data, simulator.url)
    ledger = Ledger.open(None, settings.data_dir)
    ensure_demo_tenant(ledger, DEMO_KEY)
    ledger.close()
    running = start_gateway(settings)
    yield running
    running.stop()


@pytest.fixture
def client(module_gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=module_gateway.api_url, api_key=DEMO_KEY, max_retries=0, timeout=30)


def client_for(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_url, api_key=DEMO_KEY, max_retries=0, timeout=30)


def events_of(gateway: RunningGateway, request_id: str) -> list[dict[str, Any]]:
    ledger = Ledger.open(gateway.settings.database_url, gateway.settings.data_dir)
    try:
        return ledger.event_dicts(parse_request_id(request_id))
    finally:
        ledger.close()
