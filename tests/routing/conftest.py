"""Gateways with fast resilience settings, and a clean simulator for each test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import openai
import pytest

from gateway.bootstrap import ensure_demo_tenant
from ledger.application import Ledger
from tests.conftest import DEMO_KEY
from tests.support import RunningGateway, gateway_settings, start_gateway

REDIS_URL = "redis://127.0.0.1:6379/0"


class Sim:
    def __init__(self, url: str) -> None:
        self.url = url

    def fault(self, **fault) -> None:
        httpx.post(self.url + "/_sim/faults", json=fault).raise_for_status()

    def latency(self, **settings) -> None:
        httpx.post(self.url + "/_sim/latency", json=settings).raise_for_status()

    def clear(self) -> None:
        httpx.delete(self.url + "/_sim/faults").raise_for_status()

    def reset(self) -> None:
        httpx.post(self.url + "/_sim/reset").raise_for_status()


@pytest.fixture
def sim(simulator) -> Iterator[Sim]:
    control = Sim(simulator.url)
    control.reset()
    yield control
    control.reset()


@pytest.fixture
def redis_available() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is required at {REDIS_URL}: {error}")


@pytest.fixture
def make_gateway(tmp_path: Path, simulator) -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways sharing one ledger; keyword arguments override Settings."""
    started: list[RunningGateway] = []
    base = gateway_settings(tmp_path / "data", simulator.url)
    base = replace(base, upstream_timeout_s=0.5, breaker_consecutive=3, breaker_cooldown_s=1.0,
                   redis_prefix="test-" + uuid.uuid4().hex[:8])
    ledger = Ledger.open(None, base.data_dir)
    ensure_demo_tenant(ledger, DEMO_KEY)
    ledger.close()

    def make(**overrides) -> RunningGateway:
        gateway = start_gateway(replace(base, **overrides))
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


def client_of(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_url, api_key=DEMO_KEY, max_retries=0, timeout=20)


def ledger_events(gateway: RunningGateway, request_id: str) -> list[dict]:
    from ledger.ids import parse_request_id

    ledger = Ledger.open(None, gateway.settings.data_dir)
    try:
        return ledger.event_dicts(parse_request_id(request_id))
    finally:
        ledger.close()
