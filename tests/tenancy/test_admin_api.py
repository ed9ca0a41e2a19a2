"""The Admin API: every operation is an event, and reads come back from the projection."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx

from ledger.application import hash_key
from ledger.events import ApiKey, PriceBook, ProviderCredential, Tenant
from tests.tenancy.conftest import ADMIN_TOKEN, MASTER_KEY, MODEL, Admin, caught_up, chat


def event_names(ledger, aggregate_id) -> list[str]:
    return [e["event"] for e in ledger.event_dicts(aggregate_id)]


def test_tenant_lifecycle_is_events_and_the_projection_shows_it(gw, admin, ledger_and_view):
    ledger, _ = ledger_and_view
    created = admin.ok("POST", "/admin/tenants", json={"name": "acme", "credits": "12.50", "reference": "INV-1"})
    assert created["name"] == "acme" and created["status"] == "active" and Decimal(created["balance"]) == 12.5
    assert admin.post("/admin/tenants", json={"name": "acme"}).status_code == 400  # taken once
    admin.ok("POST", "/admin/tenants", json={"name": "beta"})
    assert [t["name"] for t in admin.ok("GET", "/admin/tenants")["data"]] == ["acme", "beta"]

    suspended = admin.ok("POST", "/admin/tenants/acme/suspend", json={"reason": "unpaid invoice"})
    assert suspended["status"] == "suspended" and suspended["status_reason"] == "unpaid invoice"
    assert admin.ok("POST", "/admin/tenants/acme/reactivate")["status"] == "active"
    limits = admin.limits("acme", rpm=100, tpm=50_000, monthly_cap="40.00")["limits"]
    assert limits == {"rpm": 100, "tpm": 50_000, "monthly_cap": "40.000000000"}
    admin.ok("POST", "/admin/tenants/acme/adjustments", json={"amount": "-0.50", "reason": "goodwill reversal",
                                                                 "corrects": "INV-1"})
    shown = admin.ok("GET", "/admin/tenants/acme")
    assert Decimal(shown["balance"]) == Decimal("12.00") and shown["keys"] == {"active": 0, "revoked": 0}

    assert event_names(ledger, Tenant.create_id("acme")) == [
        "Created", "CreditsAdded", "Suspended", "Reactivated", "LimitsSet", "BalanceAdjusted"]
    entries = admin.ok("GET", "/admin/tenants/acme/entries")["data"]
    assert [(e["kind"], e["amount"], e["reference"]) for e in entries] == [
        ("credit", "12.500000000", "INV-1"), ("adjustment", "-0.500000000", "INV-1")]
    assert admin.get("/admin/tenants/nobody").status_code == 404


def test_a_limit_beyond_what_the_projection_holds_is_a_400_and_the_projection_goes_on(gw, admin, ledger_and_view):
    """rpm/tpm are INTEGER in the projection: 10 billion tokens a minute was once stored
    and then stopped the PostgreSQL projection on that event for good."""
    admin.ok("POST", "/admin/tenants", json={"name": "acme", "credits": "5"})
    key = admin.ok("POST", "/admin/tenants/acme/keys", json={"label": "ci"})
    for bad in (2_147_483_648, 10_000_000_000, 0, -1):
        assert admin.put("/admin/tenants/acme/limits", json={"tpm": bad}).status_code == 400, bad
        assert admin.put(f"/admin/keys/{key['key_id']}/limits", json={"rpm": bad}).status_code == 400, bad
        assert admin.post("/admin/tenants/acme/keys", json={"tpm": bad}).status_code == 400, bad
    limits = admin.limits("acme", rpm=2_147_483_647, tpm=2_147_483_647)["limits"]  # the largest, projected
    assert limits["rpm"] == limits["tpm"] == 2_147_483_647
    admin.ok("POST", "/admin/tenants", json={"name": "later"})  # the projection still follows
    assert "later" in [t["name"] for t in admin.ok("GET", "/admin/tenants")["data"]]
    assert chat(gw, key["key"]).status_code == 200


def test_keys_are_shown_once_listed_with_last_use_limited_and_revoked(gw, admin, ledger_and_view):
    ledger, _ = ledger_and_view
    admin.ok("POST", "/admin/tenants", json={"name": "acme", "credits": "5"})
    issued = admin.ok("POST", "/admin/tenants/acme/keys", json={"label": "ci", "rpm": 30,
                                                                 "allowed_models": ["gpt-4o-mini"]})
    assert issued["key"].startswith("2api_") and issued["limits"]["allowed_models"] == [MODEL]
    assert chat(gw, issued["key"]).status_code == 200
    listed = admin.ok("GET", "/admin/tenants/acme/keys")["data"]
    assert len(listed) == 1 and "key" not in listed[0] and issued["key"] not in str(listed)
    assert listed[0]["prefix"] == issued["prefix"] and listed[0]["label"] == "ci"
    assert listed[0]["status"] == "active" and listed[0]["created_at"] and listed[0]["last_used_at"]
    assert listed[0]["limits"] == {"rpm": 30, "tpm": None, "allowed_models": [MODEL]}

    changed = admin.ok("PUT", f"/admin/keys/{issued['key_id']}/limits", json={"tpm": 1000})
    assert changed["limits"] == {"rpm": None, "tpm": 1000, "allowed_models": None}
    assert admin.ok("DELETE", f"/admin/keys/{issued['key_id']}")["revoked"] is True
    assert admin.delete("/admin/keys/" + "0" * 32).status_code == 404
    assert admin.ok("GET", "/admin/tenants/acme/keys")["data"][0]["status"] == "revoked"
    key_events = event_names(ledger, ApiKey.create_id(hash_key(issued["key"])))
    assert key_events == ["Issued", "LimitsSet", "LimitsSet", "Revoked"]


def test_credits_add_and_list(gw, admin):
    admin.ok("POST", "/admin/tenants", json={"name": "acme"})
    assert admin.credits("acme", "25.00", "INV-7")["balance"] == "25.000000000"
    admin.credits("acme", "0.000000001", "INV-8")
    credits = admin.ok("GET", "/admin/tenants/acme/credits")["data"]
    assert [(c["amount"], c["reference"]) for c in credits] == [("25.000000000", "INV-7"), ("0.000000001", "INV-8")]
    assert all(c["event_id"] and c["position"] for c in credits)
    for bad in (25.0, "-1", "0", "abc", "1e400", "0.0000000001", None, True):
        response = admin.post("/admin/tenants/acme/credits", json={"amount": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_request"
    assert admin.post("/admin/tenants/ghost/credits", json={"amount": "1"}).status_code == 404


def test_price_books_are_published_versions(gw, admin, ledger_and_view):
    ledger, _ = ledger_and_view
    before = admin.ok("GET", "/admin/price-books")
    assert before["data"] == [] and before["in_force"] == before["base"]["version"]
    published = admin.ok("POST", "/admin/price-books", json={
        "prices": {"gpt-4o-mini": {"input": "0.20", "output": "0.80", "cached_input": "0.05"},
                   "openai/gpt-4o": {"input": "3", "output": "12", "image": "0.04"}},
        "effective_at": "2020-01-01T00:00:00Z", "note": "Q1"})
    assert published["version"] == "v1" and set(published["prices"]) == {MODEL, "openai/gpt-4o"}
    listed = admin.ok("GET", "/admin/price-books")
    assert listed["in_force"] == "v1" and listed["data"][0]["prices"][MODEL]["cached_input"] == "0.05"
    assert admin.post("/admin/price-books", json={"prices": {MODEL: {"input": "1", "output": "1"}},
                                                  "version": "v1"}).status_code == 400
    for bad in ({"nope/model": {"input": "1", "output": "1"}}, {MODEL: {"input": 0.1, "output": "1"}},
                {MODEL: {"input": "-1", "output": "1"}}, {MODEL: {"input": "1"}}, {MODEL: {"bogus": "1"}}, {}):
        assert admin.post("/admin/price-books", json={"prices": bad}).status_code == 400, bad
    assert event_names(ledger, PriceBook.create_id()) == ["Created", "Published"]


def test_provider_keys_are_stored_encrypted_and_never_returned(gw, admin, ledger_and_view):
    ledger, _ = ledger_and_view
    admin.ok("POST", "/admin/tenants", json={"name": "acme"})
    secret = "sk-tenant-own-key-9d8c7b6a"
    stored = admin.ok("PUT", "/admin/tenants/acme/provider-keys/openai", json={"api_key": secret})
    assert stored == {"object": "provider_key", "tenant": "acme", "provider": "openai", "stored": True}
    assert admin.ok("GET", "/admin/tenants/acme")["provider_keys"] == ["openai"]
    events = ledger.event_dicts(ProviderCredential.create_id("acme", "openai"))
    assert [e["event"] for e in events] == ["Stored"] and secret not in str(events)
    assert admin.put("/admin/tenants/acme/provider-keys/nope", json={"api_key": "x"}).status_code == 400
    assert admin.put("/admin/tenants/acme/provider-keys/openai", json={}).status_code == 400
    for path in ("/admin/tenants", "/admin/tenants/acme", "/admin/tenants/acme/keys", "/admin/projections"):
        assert secret not in admin.get(path).text
    assert admin.ok("DELETE", "/admin/tenants/acme/provider-keys/openai")["removed"] is True
    assert admin.ok("GET", "/admin/tenants/acme")["provider_keys"] == []


def test_provider_keys_need_the_master_key(make_gateway):
    gateway = make_gateway(master_key=None)
    admin = Admin(gateway.url)
    admin.ok("POST", "/admin/tenants", json={"name": "acme"})
    response = admin.put("/admin/tenants/acme/provider-keys/openai", json={"api_key": "sk-x"})
    assert response.status_code == 400 and "TWOAPI_MASTER_KEY" in response.json()["error"]["message"]


def test_projections_endpoint_shows_position_and_lag(gw, admin, ledger_and_view):
    ledger, view = ledger_and_view
    admin.tenant("acme")
    for _ in range(20):  # again if the projection's background seal moved the head between the reads
        caught_up(ledger, view)
        report = admin.ok("GET", "/admin/projections")["data"][0]
        head = ledger.recorder.max_notification_id()
        if report["head"] == head:
            break
    assert report["name"] == "tenancy" and report["position"] > 0 and report["pending_events"] == 0
    assert report["head"] == head and report["lag_seconds"] == 0


def test_admin_auth(make_gateway):
    gateway = make_gateway()
    url = gateway.url + "/admin/tenants"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Basic {ADMIN_TOKEN}"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    # An unknown but well-formed tenant key is refused with 403 too (never "try the admin token").
    response = httpx.get(url, headers={"Authorization": "Bearer 2api_" + "x" * 43})
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    disabled = make_gateway(admin_token=None)
    response = httpx.get(disabled.url + "/admin/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 403


def test_admin_reads_its_own_writes_across_gateways(make_gateway):
    first, second = make_gateway(), make_gateway()
    Admin(first.url).ok("POST", "/admin/tenants", json={"name": "acme", "credits": "3"})
    started = time.monotonic()
    shown = Admin(second.url).ok("GET", "/admin/tenants/acme")
    assert shown["balance"] == "3.000000000" and time.monotonic() - started < 3
    assert MASTER_KEY not in str(shown)
