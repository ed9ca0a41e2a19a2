"""Routing defaults per tenant and per key: precedence request > key > tenant > the
gateway's settings, through the official openai SDK against a running gateway and the
simulator, on SQLite and PostgreSQL; the Admin API and the CLI that set them; the
`Routed` event that says where each option came from."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import openai
import pytest

from adapters.catalog import default_catalog
from gateway.cli import main as twoapi
from ledger.application import Ledger, hash_key
from ledger.events import ApiKey, Tenant
from ledger.ids import parse_request_id
from ledger.projections.runner import catch_up, close_view, open_view, rebuild
from tests.support import RunningGateway, gateway_settings, start_gateway
from tests.tenancy.conftest import Admin

ADMIN_TOKEN = "admin-token-for-routing-defaults"
HI = [{"role": "user", "content": "hi"}]
CHAT_MODELS = [m for m in default_catalog().models if m.supports("chat")]
BEST = max(CHAT_MODELS, key=lambda m: m.quality).id
CHEAPEST = "google/gemini-1.5-flash"  # tests/routing/test_strategies.py shows why
INHERIT = {"strategy": None, "fallbacks": None, "max_attempts": None, "timeout_ms": None, "max_cost": None}


@pytest.fixture
def make(tmp_path: Path, simulator, store_url: str | None) -> Iterator[Callable[..., RunningGateway]]:
    """Gateways with the Admin API on this test's ledger (SQLite or PostgreSQL)."""
    started: list[RunningGateway] = []
    base = replace(gateway_settings(tmp_path / "data", simulator.url, store_url), admin_token=ADMIN_TOKEN,
                   upstream_timeout_s=0.5, breaker_consecutive=50,  # failing models stay in the chain
                   redis_prefix="test-" + uuid.uuid4().hex[:8])

    def start(**overrides) -> RunningGateway:
        gateway = start_gateway(replace(base, **overrides))
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gw(make) -> RunningGateway:
    return make()


@pytest.fixture
def admin(gw: RunningGateway) -> Iterator[Admin]:
    client = Admin(gw.url, ADMIN_TOKEN)
    yield client
    client.http.close()


def sdk(gateway: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0, timeout=20)


def ask(gateway: RunningGateway, key: str, model: str = "auto", **body):
    return sdk(gateway, key).chat.completions.with_raw_response.create(model=model, messages=HI, extra_body=body)


def routed(gateway: RunningGateway, raw) -> dict:
    ledger = Ledger.open(gateway.settings.database_url, gateway.settings.data_dir)
    try:
        events = ledger.event_dicts(parse_request_id(raw.headers["x-request-id"]))
    finally:
        ledger.close()
    return next(e for e in events if e["event"] == "Routed")


def test_tenant_default_strategy_applies_to_auto_a_key_default_overrides_it_and_the_request_both(gw, admin, sim):
    acme = admin.tenant("acme", keys=2)
    plain, own = acme.keys[0], acme.keys[1]

    # Nothing set: the gateway's settings (strategy cost).
    raw = ask(gw, plain["key"])
    assert raw.headers["x-2api-model"] == CHEAPEST
    event = routed(gw, raw)
    assert event["options"]["strategy"] == {"value": "cost", "from": "config"}
    assert event["reason"].endswith("strategy cost from the gateway's configuration")
    assert event["options"]["max_attempts"] == {"value": 4, "from": "config"}

    shown = admin.ok("PUT", "/admin/tenants/acme/routing", json={"strategy": "quality"})
    assert shown["routing"] == {**INHERIT, "strategy": "quality"}
    raw = ask(gw, plain["key"])
    assert raw.headers["x-2api-model"] == BEST and raw.headers["x-2api-routing-strategy"] == "quality"
    event = routed(gw, raw)
    assert event["strategy"] == "quality"
    assert event["options"]["strategy"] == {"value": "quality", "from": "tenant"}
    assert "strategy quality from the tenant's defaults" in event["reason"]

    key_shown = admin.ok("PUT", f"/admin/keys/{own['key_id']}/routing", json={"strategy": "cost"})
    assert key_shown["routing"] == {**INHERIT, "strategy": "cost"} and key_shown["tenant"] == "acme"
    raw = ask(gw, own["key"])
    assert raw.headers["x-2api-model"] == CHEAPEST and raw.headers["x-2api-routing-strategy"] == "cost"
    assert routed(gw, raw)["options"]["strategy"] == {"value": "cost", "from": "key"}
    assert "strategy cost from the key's defaults" in routed(gw, raw)["reason"]
    assert ask(gw, plain["key"]).headers["x-2api-model"] == BEST  # the other key still has the tenant's

    # The request's own routing beats both.
    raw = ask(gw, own["key"], routing={"strategy": "quality"})
    assert raw.headers["x-2api-model"] == BEST
    assert routed(gw, raw)["options"]["strategy"] == {"value": "quality", "from": "request"}
    raw = ask(gw, plain["key"], routing={"strategy": "cost"})
    assert raw.headers["x-2api-model"] == CHEAPEST
    assert routed(gw, raw)["options"]["strategy"] == {"value": "cost", "from": "request"}

    # Each option is resolved on its own: the key sets the strategy, the tenant the rest.
    admin.ok("PUT", "/admin/tenants/acme/routing", json={"strategy": "quality", "timeout_ms": 30000,
                                                        "max_attempts": 2})
    options = routed(gw, ask(gw, own["key"]))["options"]
    assert options["strategy"] == {"value": "cost", "from": "key"}
    assert options["timeout_ms"] == {"value": 30000, "from": "tenant"}
    assert options["max_attempts"] == {"value": 2, "from": "tenant"}

    # An empty body puts the key back to inheriting everything.
    assert admin.ok("PUT", f"/admin/keys/{own['key_id']}/routing", json={})["routing"] == INHERIT
    assert ask(gw, own["key"]).headers["x-2api-model"] == BEST


def test_tenant_fallbacks_apply_to_an_explicit_model_when_it_fails(gw, admin, sim):
    acme = admin.tenant("acme", keys=1)
    admin.ok("PUT", "/admin/tenants/acme/routing", json={"fallbacks": ["claude-3-5-haiku"]})
    sim.fault(provider="openai", model="gpt-4o-mini", mode="status", status=500)

    raw = ask(gw, acme.key, "openai/gpt-4o-mini")
    assert raw.headers["x-2api-model"] == "anthropic/claude-3-5-haiku"
    assert int(raw.headers["x-2api-attempts"]) >= 2
    event = routed(gw, raw)
    assert event["chain"] == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"]
    assert event["options"]["fallbacks"] == {"value": ["anthropic/claude-3-5-haiku"], "from": "tenant"}
    assert event["reason"] == "requested model, then the fallbacks of the tenant's defaults, in order"

    # The request's own fallbacks replace the defaults' list.
    raw = ask(gw, acme.key, "openai/gpt-4o-mini", models=["google/gemini-1.5-flash"])
    assert raw.headers["x-2api-model"] == "google/gemini-1.5-flash"
    event = routed(gw, raw)
    assert event["chain"] == ["openai/gpt-4o-mini", "google/gemini-1.5-flash"]
    assert event["options"]["fallbacks"] == {"value": ["google/gemini-1.5-flash"], "from": "request"}

    # A key's allowed models bind the defaults' fallbacks too: the key may not fall back.
    narrow = admin.ok("POST", "/admin/tenants/acme/keys", json={"allowed_models": ["openai/gpt-4o-mini"]})
    with pytest.raises(openai.InternalServerError) as caught:
        ask(gw, narrow["key"], "openai/gpt-4o-mini")
    assert caught.value.status_code == 502 and caught.value.code == "upstream_error"
    candidates = routed(gw, caught.value.response)["candidates"]
    assert candidates[1] == {"requested": "anthropic/claude-3-5-haiku", "model": "anthropic/claude-3-5-haiku",
                             "score": None, "excluded": "not among the key's allowed models"}


def test_key_max_attempts_and_tenant_timeout_bound_the_attempt_loop(gw, admin, sim):
    acme = admin.tenant("acme", keys=1)
    admin.ok("PUT", "/admin/tenants/acme/routing", json={"fallbacks": ["anthropic/claude-3-5-haiku"],
                                                        "timeout_ms": 20000})
    admin.ok("PUT", f"/admin/keys/{acme.keys[0]['key_id']}/routing", json={"max_attempts": 1})
    sim.fault(provider="openai", model="gpt-4o-mini", mode="status", status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        ask(gw, acme.key, "openai/gpt-4o-mini")
    assert caught.value.response.headers["x-2api-attempts"] == "1"
    options = routed(gw, caught.value.response)["options"]
    assert options["max_attempts"] == {"value": 1, "from": "key"}
    assert options["timeout_ms"] == {"value": 20000, "from": "tenant"}
    assert options["fallbacks"]["from"] == "tenant"
    # The request's own max_attempts lets the fallback answer.
    raw = ask(gw, acme.key, "openai/gpt-4o-mini", routing={"max_attempts": 3})
    assert raw.headers["x-2api-model"] == "anthropic/claude-3-5-haiku"


BAD_DEFAULTS = [
    ({"strategy": "fastest"}, "strategy"),
    ({"strategy": 3}, "strategy"),
    ({"fallbacks": ["openai/gpt-9"]}, "fallbacks"),
    ({"fallbacks": "openai/gpt-4o-mini"}, "fallbacks"),
    ({"fallbacks": ["openai/text-embedding-3-small"]}, "fallbacks"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 11}, "max_attempts"),
    ({"max_attempts": "3"}, "max_attempts"),
    ({"max_attempts": True}, "max_attempts"),
    ({"timeout_ms": 50}, "timeout_ms"),
    ({"timeout_ms": 1.5}, "timeout_ms"),
    ({"max_cost": "-1"}, "max_cost"),
    ({"max_cost": "abc"}, "max_cost"),
    ({"max_cost": 0.01}, "max_cost"),  # money is a decimal string, never a JSON float
    ({"retries": 3}, "retries"),
]


def test_bad_routing_defaults_are_a_clear_400_naming_the_field(gw, admin):
    acme = admin.tenant("acme", keys=1)
    for path in ("/admin/tenants/acme/routing", f"/admin/keys/{acme.keys[0]['key_id']}/routing"):
        for body, param in BAD_DEFAULTS:
            response = admin.put(path, json=body)
            assert response.status_code == 400, (path, body, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_request" and error["type"] == "invalid_request_error"
            assert error["param"] == param and f"'{param}'" in error["message"], (body, error)
        for raw in (b"[]", b"not json", b""):
            response = admin.put(path, content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 400 and response.json()["error"]["code"] in ("invalid_request",
                                                                                        "invalid_json")
    assert admin.ok("GET", "/admin/tenants/acme")["routing"] == INHERIT  # nothing was recorded


def test_routing_defaults_are_events_shown_by_the_admin_api(gw, admin, sim):
    acme = admin.tenant("acme", keys=1)
    key_id = acme.keys[0]["key_id"]
    assert admin.ok("GET", "/admin/tenants/acme")["routing"] == INHERIT
    admin.ok("PUT", "/admin/tenants/acme/routing", json={
        "strategy": "quality", "fallbacks": ["gpt-4o-mini", "openai/gpt-4o-mini", "claude-3-5-haiku"],
        "max_attempts": 3, "timeout_ms": 15000, "max_cost": "0.01"})
    expected = {"strategy": "quality", "fallbacks": ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"],
                "max_attempts": 3, "timeout_ms": 15000, "max_cost": "0.01"}
    assert admin.ok("GET", "/admin/tenants/acme")["routing"] == expected
    assert next(t for t in admin.ok("GET", "/admin/tenants")["data"] if t["name"] == "acme")["routing"] == expected
    admin.ok("PUT", f"/admin/keys/{key_id}/routing", json={"strategy": "latency", "max_attempts": None})
    key = admin.ok("GET", f"/admin/keys/{key_id}")
    assert key["routing"] == {**INHERIT, "strategy": "latency"} and "key" not in key
    assert admin.ok("GET", "/admin/tenants/acme/keys")["data"][0]["routing"] == key["routing"]

    assert admin.put("/admin/tenants/ghost/routing", json={}).status_code == 404
    assert admin.put("/admin/keys/" + "0" * 32 + "/routing", json={}).status_code == 404
    assert admin.get("/admin/keys/" + "0" * 32).status_code == 404
    assert httpx.put(gw.url + "/admin/tenants/acme/routing", json={},
                     headers={"Authorization": f"Bearer {acme.key}"}).status_code == 403

    ledger = Ledger.open(gw.settings.database_url, gw.settings.data_dir)
    try:
        tenant_events = ledger.event_dicts(Tenant.create_id("acme"))
        key_events = ledger.event_dicts(ApiKey.create_id(hash_key(acme.key)))
    finally:
        ledger.close()
    assert tenant_events[-1]["event"] == "RoutingSet"
    assert {k: tenant_events[-1][k] for k in expected} == expected
    assert key_events[-1]["event"] == "RoutingSet" and key_events[-1]["strategy"] == "latency"


def test_the_cli_sets_and_shows_routing_defaults(gw, admin, sim, monkeypatch, capsys):
    acme = admin.tenant("acme", keys=1)
    key_id = acme.keys[0]["key_id"]
    monkeypatch.setenv("TWOAPI_DATA_DIR", str(gw.settings.data_dir))
    if gw.settings.database_url:
        monkeypatch.setenv("DATABASE_URL", gw.settings.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)

    assert twoapi(["routing", "set", "--tenant", "acme", "--strategy", "quality", "--timeout-ms", "30000"]) == 0
    assert '"strategy":"quality"' in capsys.readouterr().out
    assert twoapi(["routing", "set", "--key", key_id, "--max-attempts", "2", "--fallbacks", "claude-3-5-haiku"]) == 0
    capsys.readouterr()
    assert twoapi(["routing", "show", "--key", key_id]) == 0
    shown = capsys.readouterr().out
    assert '"max_attempts":2' in shown and '"fallbacks":["anthropic/claude-3-5-haiku"]' in shown
    assert twoapi(["routing", "set", "--tenant", "acme", "--strategy", "cheapest"]) == 2
    assert "strategy" in capsys.readouterr().err
    assert twoapi(["routing", "set", "--tenant", "acme", "--fallbacks", "openai/gpt-9"]) == 2
    assert twoapi(["routing", "set", "--tenant", "ghost", "--strategy", "cost"]) == 1
    assert twoapi(["routing", "set", "--strategy", "cost"]) == 2

    # The gateway follows within a second or two (key cache, tenant state cache).
    deadline = time.monotonic() + 10
    while True:
        options = routed(gw, ask(gw, acme.key))["options"]
        if options.get("strategy", {}).get("from") == "tenant" and options["max_attempts"]["from"] == "key":
            break
        assert time.monotonic() < deadline, options
        time.sleep(0.2)
    assert options["strategy"] == {"value": "quality", "from": "tenant"}
    assert options["timeout_ms"] == {"value": 30000, "from": "tenant"}
    # `none` makes one option inherit again; the others stay.
    assert twoapi(["routing", "set", "--tenant", "acme", "--strategy", "none"]) == 0
    assert '"strategy":null,' in capsys.readouterr().out
    assert admin.ok("GET", "/admin/tenants/acme")["routing"]["timeout_ms"] == 30000


def test_the_projection_carries_routing_defaults_and_rebuilds_them(tmp_path: Path, store_url: str | None):
    data_dir = tmp_path / "data"
    ledger = Ledger.open(store_url, data_dir)
    try:
        ledger.create_tenant("acme")
        issued = ledger.issue_key("acme")
        record = {"strategy": "latency", "fallbacks": ["openai/gpt-4o-mini"], "max_attempts": None,
                  "timeout_ms": 9000, "max_cost": None}
        ledger.set_tenant_routing("acme", record)
        ledger.set_key_routing(issued.key_id, {**INHERIT, "max_cost": "0.5"})
        for attempt in range(2):  # as projected, then rebuilt from the first event
            if attempt:
                rebuild(store_url, data_dir)
            view = open_view(store_url, data_dir)
            try:
                assert catch_up(store_url, data_dir, ledger, view, timeout=30)
                assert view.tenant("acme", "2000-01")["routing"] == record
                assert view.tenant_state("acme", "2000-01")["routing"] == record
                assert view.key(issued.key_id)["routing"] == {**INHERIT, "max_cost": "0.5"}
            finally:
                close_view(view)
    finally:
        ledger.close()
