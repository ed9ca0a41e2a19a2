"""Budgets: no balance or a reached monthly cap is 402 (fail closed), credits make it
work again, and overspend is bounded by the requests in flight when the balance
crossed zero (plus, across processes, one cache period and the projection lag)."""

from __future__ import annotations

import concurrent.futures
import time
from decimal import Decimal

import httpx

from tests.tenancy.conftest import MODEL, Admin, caught_up, chat

SECOND_MODEL = "anthropic/claude-3-5-haiku"


def cost_of_one(gateway, admin: Admin) -> Decimal:
    probe = admin.tenant("probe", credits="1.00")
    response = chat(gateway, probe.key)
    assert response.status_code == 200, response.text
    return Decimal(response.headers["x-2api-cost"])


def test_a_tenant_at_zero_balance_gets_402_and_credits_make_it_work_again(gw, admin):
    tenant = admin.tenant("acme", credits=None)
    refused = chat(gw, tenant.key)
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_balance"
    assert refused.json()["error"]["type"] == "insufficient_quota"
    admin.credits("acme", "0.50", "INV-42")
    answered = chat(gw, tenant.key)
    assert answered.status_code == 200, answered.text


def test_402_is_recorded_in_the_ledger_and_costs_nothing(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    tenant = admin.tenant("acme", credits=None)
    refused = chat(gw, tenant.key)
    events = [e["event"] for e in ledger.event_dicts(_request_uuid(refused))]
    assert events == ["Received", "Failed"]
    caught_up(ledger, view)
    assert view.entries("acme") == []


def test_sequential_overspend_is_less_than_one_request(gw, admin, ledger_and_view):
    """One request in flight at a time: the last admitted is the only overspend,
    whatever the projection's lag (this process counts its own charges at once)."""
    ledger, view = ledger_and_view
    cost = cost_of_one(gw, admin)
    allowed = 6
    credits = cost * allowed - Decimal("0.000000001")  # the 6th request crosses zero
    admin.ok("POST", "/admin/tenants", json={"name": "acme", "credits": str(credits)})
    key = admin.ok("POST", "/admin/tenants/acme/keys", json={})["key"]
    statuses = [chat(gw, key).status_code for _ in range(allowed + 4)]
    assert statuses == [200] * allowed + [402] * 4
    caught_up(ledger, view)
    balance = view.balances()["tenant:acme"]
    assert balance == credits - allowed * cost
    assert -cost < balance < 0


def test_concurrent_overspend_is_bounded_by_the_requests_in_flight(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    cost = cost_of_one(gw, admin)
    in_flight = 8
    credits = cost * 2
    admin.ok("POST", "/admin/tenants", json={"name": "acme", "credits": str(credits)})
    key = admin.ok("POST", "/admin/tenants/acme/keys", json={})["key"]
    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        for _ in range(3):
            statuses = list(pool.map(lambda _: chat(gw, key).status_code, range(in_flight)))
            assert set(statuses) <= {200, 402}
    caught_up(ledger, view)
    balance = view.balances()["tenant:acme"]
    served = (credits - balance) / cost
    assert balance >= credits - cost * (2 + in_flight), "more than the in-flight requests were overspent"
    assert served >= 2
    assert chat(gw, key).status_code == 402


def test_overspend_across_two_gateways_stops_within_a_cache_period_and_the_lag(make_gateway):
    """Two processes: each sees the other's spend through the projection, so requests
    may be admitted until one cache period (1 s) plus the projection lag after the
    balance crossed zero, and never later."""
    first, second = make_gateway(), make_gateway()
    admin = Admin(first.url)
    cost = cost_of_one(first, admin)
    credits = cost * 10
    admin.ok("POST", "/admin/tenants", json={"name": "acme", "credits": str(credits)})
    key = admin.ok("POST", "/admin/tenants/acme/keys", json={})["key"]
    served: list[float] = []
    deadline = time.monotonic() + 20
    refused_by = set()
    while len(refused_by) < 2 and time.monotonic() < deadline:
        for gateway in (first, second):
            status = chat(gateway, key).status_code
            if status == 200:
                served.append(time.monotonic())
            else:
                assert status == 402
                refused_by.add(gateway.url)
    assert refused_by == {first.url, second.url}
    crossed_at = served[9]  # the 10th request spent the last of the credits
    late = [t for t in served if t > crossed_at + 1.0 + 1.0]  # cache period + a generous lag
    assert not late, f"{len(late)} requests were admitted long after the balance crossed zero"


def test_the_monthly_cap_is_a_402_until_it_is_raised(gw, admin):
    cost = cost_of_one(gw, admin)
    tenant = admin.tenant("acme", credits="5.00")
    admin.limits("acme", monthly_cap=str(cost * 2))
    statuses = [chat(gw, tenant.key).status_code for _ in range(4)]
    assert statuses == [200, 200, 402, 402]
    refused = chat(gw, tenant.key).json()["error"]
    assert refused["code"] == "insufficient_balance" and "monthly spend cap" in refused["message"]
    admin.limits("acme", monthly_cap=str(cost * 3))
    assert chat(gw, tenant.key).status_code == 200
    admin.limits("acme")  # no cap
    assert chat(gw, tenant.key).status_code == 200


def test_a_suspended_tenant_gets_403_until_reactivated(gw, admin):
    tenant = admin.tenant("acme", keys=2)
    assert chat(gw, tenant.key).status_code == 200
    admin.ok("POST", "/admin/tenants/acme/suspend", json={"reason": "abuse"})
    for issued in tenant.keys:
        refused = chat(gw, issued["key"])
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    admin.ok("POST", "/admin/tenants/acme/reactivate")
    assert chat(gw, tenant.key).status_code == 200


def test_a_key_uses_only_its_allowed_models(gw, admin):
    tenant = admin.tenant("acme", allowed_models=["gpt-4o-mini"])
    assert chat(gw, tenant.key).status_code == 200
    assert chat(gw, tenant.key, model="gpt-4o-mini").status_code == 200  # an alias of the allowed id
    for body in ({"model": SECOND_MODEL}, {"models": [SECOND_MODEL]}, {"model": "auto"},
                 {"routing": {"fallbacks": [SECOND_MODEL]}}):
        refused = chat(gw, tenant.key, **body)
        assert refused.status_code == 403, body
        assert refused.json()["error"]["code"] == "permission_denied"
    assert chat(gw, tenant.key, model="auto", models=[MODEL]).status_code == 200


def test_usage_reports_the_callers_requests_tokens_cost_and_balance(gw, admin):
    tenant = admin.tenant("acme", credits="3.00", keys=2)
    costs = Decimal(0)
    for key, model in ((tenant.keys[0], MODEL), (tenant.keys[0], SECOND_MODEL), (tenant.keys[1], MODEL)):
        response = chat(gw, key["key"], model=model)
        assert response.status_code == 200
        costs += Decimal(response.headers["x-2api-cost"])
    headers = {"Authorization": f"Bearer {tenant.key}"}
    deadline = time.monotonic() + 10
    while True:
        report = httpx.get(gw.api_url + "/usage", headers=headers).json()
        if report["total"]["requests"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert report["tenant"] == "acme" and report["group_by"] == "day" and report["total"]["requests"] == 3
    assert Decimal(report["total"]["cost"]) == costs
    assert Decimal(report["balance"]) == Decimal("3.00") - costs
    assert report["total"]["input_tokens"] > 0 and report["total"]["output_tokens"] > 0
    by_model = httpx.get(gw.api_url + "/usage", params={"group_by": "model"}, headers=headers).json()["data"]
    assert {row["model"]: row["requests"] for row in by_model} == {MODEL: 2, SECOND_MODEL: 1}
    by_key = httpx.get(gw.api_url + "/usage", params={"group_by": "key"}, headers=headers).json()["data"]
    assert {row["key_id"]: row["requests"] for row in by_key} == {tenant.keys[0]["key_id"]: 2,
                                                                   tenant.keys[1]["key_id"]: 1}
    assert {row["label"] for row in by_key} == {"k0", "k1"}
    empty = httpx.get(gw.api_url + "/usage", params={"start": "2020-01-01", "end": "2020-01-31"},
                      headers=headers).json()
    assert empty["data"] == [] and empty["total"]["requests"] == 0
    for bad in ({"group_by": "tenant"}, {"start": "yesterday"}, {"start": "2024-02-01", "end": "2024-01-01"},
                {"start": "2020-01-01", "end": "2024-01-01"}):
        response = httpx.get(gw.api_url + "/usage", params=bad, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request", bad
    assert httpx.get(gw.api_url + "/usage").status_code == 401


def _request_uuid(response: httpx.Response):
    from ledger.ids import parse_request_id

    return parse_request_id(response.headers["x-request-id"])
