"""A gateway on the embedded ledger, shared by a module's tests (SDK and client
compatibility tests need a real gateway, not one per store), and a reader of its
ledger."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bootstrap import ensure_demo_tenant
from ledger.application import Ledger
from ledger.ids import parse_request_id
from tests.conftest import DEMO_KEY
from tests.support import RunningGateway, gateway_settings, start_gateway

# The Python SDK is tested from its source tree (tests/sdk/test_packages.py installs it).
SDK_SRC = Path(__file__).resolve().parents[2] / "sdk" / "python" / "src"
if str(SDK_SRC) not in sys.path:
    sys.path.insert(0, str(SDK_SRC))


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory, simulator) -> Iterator[RunningGateway]:
    settings = gateway_settings(tmp_path_factory.mktemp("gateway") / "data", simulator.url)
    ledger = Ledger.open(None, settings.data_dir)
    ensure_demo_tenant(ledger, DEMO_KEY)
    ledger.close()
    running = start_gateway(settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def module_ledger(module_gateway: RunningGateway) -> Iterator[Ledger]:
    ledger = Ledger.open(None, module_gateway.settings.data_dir)
    yield ledger
    ledger.close()


def events_of(ledger: Ledger, request_id: str) -> list[dict]:
    return ledger.event_dicts(parse_request_id(request_id))
