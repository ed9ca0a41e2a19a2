"""Gateways with the Admin API enabled, real stores (SQLite and PostgreSQL), and Redis.

`make_gateway()` starts a gateway on this test's ledger (several calls share it, as
processes of one deployment would); `admin` talks to the first one's Admin API.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ledger.application import Ledger
from ledger.projections.runner import close_view, open_view, wait_caught_up
from tests.support import RunningGateway, gateway_settings, start_gateway

ADMIN_TOKEN = "admin-token-for-tests-7c1f0e"
MASTER_KEY = "5f" * 32
REDIS_URL = "redis://127.0.0.1:6379/0"
MESSAGES = [{"role": "user", "content": "Say something short."}]
MODEL = "openai/gpt-4o-mini"


@dataclass
class Tenant:
    name: str
    keys: list[dict[str, Any]]

    @property
    def key(self) -> str:
        return self.keys[0]["key"]


class Admin:
    """The Admin API of one gateway."""

    def __init__(self, url: str, token: str = ADMIN_TOKEN) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def __getattr__(self, method: str) -> Callable[..., httpx.Response]:
        return getattr(self.http, method)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    def tenant(self, name: str, credits: str | None = "10.00", keys: int = 1, **key_options: Any) -> Tenant:
        body: dict[str, Any] = {"name": name}
        if credits is not None:
            body["credits"] = credits
            body["reference"] = f"welcome-{name}"
        self.ok("POST", "/admin/tenants", json=body)
        issued = [self.ok("POST", f"/admin/tenants/{name}/keys", json={"label": f"k{i}", **key_options})
                  for i in range(keys)]
        return Tenant(name, issued)

    def credits(self, tenant: str, amount: str, reference: str = "") -> Any:
        return self.ok("POST", f"/admin/tenants/{tenant}/credits", json={"amount": amount, "reference": reference})

    def limits(self, tenant: str, **limits: Any) -> Any:
        return self.ok("PUT", f"/admin/tenants/{tenant}/limits", json=limits)


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    import redis

    prefix = "t" + uuid.uuid4().hex[:10]
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is required at {REDIS_URL}: {error}")
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(prefix + ":*"):
        client.delete(key)


@pytest.fixture
def make_gateway(tmp_path: Path, simulator, store_url: str | None,
                 redis_prefix: str) -> Iterator[Callable[..., RunningGateway]]:
    started: list[RunningGateway] = []

    def make(**overrides: Any) -> RunningGateway:
        settings = replace(gateway_settings(tmp_path / "data", simulator.url, store_url),
                           admin_token=ADMIN_TOKEN, master_key=MASTER_KEY, redis_prefix=redis_prefix)
        gateway = start_gateway(replace(settings, **overrides))
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gw(make_gateway) -> RunningGateway:
    return make_gateway()


@pytest.fixture
def admin(gw: RunningGateway) -> Iterator[Admin]:
    client = Admin(gw.url)
    yield client
    client.http.close()


@pytest.fixture
def ledger_and_view(gw: RunningGateway) -> Iterator[tuple[Ledger, Any]]:
    """The gateway's ledger and projection, opened as an auditor would."""
    ledger = Ledger.open(gw.settings.database_url, gw.settings.data_dir)
    view = open_view(gw.settings.database_url, gw.settings.data_dir)
    yield ledger, view
    close_view(view)
    ledger.close()


def client(gateway: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0)


def chat(gateway: RunningGateway, key: str, **kwargs: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": MESSAGES, **kwargs}
    return httpx.post(gateway.api_url + "/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def caught_up(ledger: Ledger, view: Any) -> None:
    assert wait_caught_up(ledger, view, timeout=15), "the projection did not catch up"


def decimal(text: str) -> Decimal:
    return Decimal(text)
