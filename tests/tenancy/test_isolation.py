"""Tenant isolation on every endpoint the gateway serves (enumerated from its routes, not
sampled): two tenants with several keys each; no key of one reads the other's usage,
requests, keys or ledger entries, or spends its money; tenant keys get 403 on /admin.
A route added later is covered automatically: /admin routes by the 403 check, every
other route by calling it with each tenant's keys and looking for the other's data.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import Settings
from tests.tenancy.conftest import Admin, Tenant, caught_up, chat

PUBLIC = {"/health", "/openapi.json", "/static/<path:filename>"}
# A body each POST route of the public API accepts (a route not listed gets `{}`).
BODIES = {
    "/v1/chat/completions": {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages": {"model": "anthropic/claude-3-5-haiku", "max_tokens": 20,
                     "messages": [{"role": "user", "content": "hi"}]},
    "/v1/embeddings": {"model": "openai/text-embedding-3-small", "input": "hi"},
    "/v1/images/generations": {"model": "openai/dall-e-3", "prompt": "a cat"},
}


def routes(tmp_path: Path) -> list[tuple[str, str]]:
    app = create_app(Settings(data_dir=tmp_path / "routes"))
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule))
    return found


def fill(rule: str, tenant: Tenant, query_names: list[str]) -> list[str]:
    """Concrete paths for a rule, aimed at `tenant`'s data."""
    values = {"tenant": [tenant.name], "key_id": [tenant.keys[0]["key_id"]], "provider": ["openai"],
              "name": query_names or ["usage"], "query": query_names or ["usage"]}
    paths = [rule]
    for name in re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule):
        paths = [re.sub(rf"<(?:[^:<>]+:)?{name}>", value, path, count=1) for path in paths
                 for value in values.get(name, ["x"])]
    return paths


def marks_of(tenant: Tenant, request_ids: list[str]) -> list[str]:
    """Strings that appear only in `tenant`'s data."""
    marks = [tenant.name]
    for key in tenant.keys:
        marks += [key["key_id"], key["prefix"], key["key"]]
    return marks + request_ids + [r.removeprefix("req_") for r in request_ids]


@pytest.fixture
def two_tenants(gw, admin) -> tuple[Tenant, Tenant, dict[str, list[str]]]:
    acme = admin.tenant("acme-corp-7f3", credits="5.00", keys=3)
    beta = admin.tenant("beta-inc-2c9", credits="5.00", keys=3)
    requests: dict[str, list[str]] = {acme.name: [], beta.name: []}
    for tenant in (acme, beta):
        for key in tenant.keys:
            response = chat(gw, key["key"])
            assert response.status_code == 200
            requests[tenant.name].append(response.headers["x-request-id"])
    return acme, beta, requests


def test_every_endpoint_keeps_tenants_apart(gw, admin, two_tenants, ledger_and_view, tmp_path):
    acme, beta, requests = two_tenants
    ledger, view = ledger_and_view
    caught_up(ledger, view)
    listed = httpx.get(gw.api_url + "/analytics", headers={"Authorization": f"Bearer {acme.key}"})
    query_names = [q.get("name") for q in listed.json().get("data", [])] if listed.status_code == 200 else []
    query_names = [q for q in query_names if isinstance(q, str)][:20]

    visited = set()
    for method, rule in routes(tmp_path):
        visited.add((method, rule))
        for caller, other in ((acme, beta), (beta, acme)):
            for key in caller.keys:
                for path in fill(rule, other, query_names) + fill(rule, caller, query_names):
                    response = httpx.request(method, gw.url + path, headers={"Authorization": f"Bearer {key['key']}"},
                                             json=BODIES.get(rule, {}) if method != "GET" else None,
                                             params={"tenant": other.name, "key_id": other.keys[0]["key_id"]},
                                             timeout=30)
                    if rule.startswith("/admin"):
                        assert response.status_code == 403, (method, path, response.status_code)
                        assert response.json()["error"]["code"] == "permission_denied"
                        continue
                    assert response.status_code != 500, (method, path, response.text[:300])
                    for mark in marks_of(other, requests[other.name]):
                        assert mark not in response.text, (method, path, mark)
    assert {rule for _, rule in visited} >= {"/v1/usage", "/v1/chat/completions", "/admin/tenants/<tenant>/keys",
                                             "/admin/tenants/<tenant>/entries", "/admin/keys/<key_id>"}

    # Nothing was spent from one tenant by the other's keys: each balance moved only
    # by its own requests (all of which are in its own usage).
    caught_up(ledger, view)
    for tenant in (acme, beta):
        headers = {"Authorization": f"Bearer {tenant.key}"}
        for param in ("tenant", "key_id", "account"):  # no parameter can name another tenant's data
            refused = httpx.get(gw.api_url + "/usage", headers=headers, params={param: "beta-inc-2c9"})
            assert refused.status_code == 400 and refused.json()["error"]["param"] == param
        usage = httpx.get(gw.api_url + "/usage", headers=headers).json()
        assert usage["tenant"] == tenant.name
        spent = sum((e["amount"] for e in view.entries(tenant.name, "usage")), Decimal(0))
        assert Decimal(usage["total"]["cost"]) == -spent
        assert view.balances()["tenant:" + tenant.name] == Decimal("5.00") + spent  # its credits - its own use
        assert Decimal(usage["balance"]) == Decimal("5.00") + spent
        own_keys = {k["key_id"] for k in tenant.keys}
        assert {e["tenant"] for e in view.entries(tenant.name)} == {tenant.name}
        by_key = httpx.get(gw.api_url + "/usage", params={"group_by": "key"},
                           headers={"Authorization": f"Bearer {tenant.key}"}).json()["data"]
        assert {row["key_id"] for row in by_key} <= own_keys


def test_tenant_keys_get_403_on_admin_even_for_their_own_tenant(gw, admin, two_tenants):
    acme, _, _ = two_tenants
    for path in ("/admin/tenants", f"/admin/tenants/{acme.name}", f"/admin/tenants/{acme.name}/keys",
                 "/admin/projections", "/admin/price-books", "/admin/nonexistent", "/admin"):
        response = httpx.get(gw.url + path, headers={"Authorization": f"Bearer {acme.key}"})
        assert response.status_code == 403, path
    assert httpx.delete(gw.url + f"/admin/keys/{acme.keys[1]['key_id']}",
                        headers={"Authorization": f"Bearer {acme.key}"}).status_code == 403
    assert chat(gw, acme.keys[1]["key"]).status_code == 200  # not revoked


def test_a_revoked_key_stops_on_every_process_within_a_second(make_gateway):
    gateways = [make_gateway() for _ in range(3)]
    admin = Admin(gateways[0].url)
    tenant = admin.tenant("acme", keys=2)
    for gateway in gateways:  # every process has the key cached as valid
        assert chat(gateway, tenant.key).status_code == 200
    admin.ok("DELETE", f"/admin/keys/{tenant.keys[0]['key_id']}")
    revoked_at = time.monotonic()
    answers = []  # (seconds after the revocation when sent, status)
    while time.monotonic() - revoked_at < 1.6:
        for gateway in gateways:
            sent = time.monotonic() - revoked_at
            answers.append((sent, chat(gateway, tenant.key).status_code))
    accepted_late = [(round(t, 3), status) for t, status in answers if t > 1.0 and status != 401]
    assert not accepted_late, accepted_late
    for gateway in gateways:
        assert chat(gateway, tenant.key).status_code == 401
        assert chat(gateway, tenant.keys[1]["key"]).status_code == 200  # the tenant's other key still works
