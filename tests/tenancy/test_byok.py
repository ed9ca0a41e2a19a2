"""Bring your own key: a tenant's provider key is stored encrypted, used for that
tenant's requests only, and never returned, logged or written in clear."""

from __future__ import annotations

import time

import httpx

from ledger.credentials import CredentialCipher, CredentialError
from ledger.events import ProviderCredential
from tests.tenancy.conftest import MASTER_KEY, Admin, chat

# The simulator refuses the key "invalid" with the provider's own 401.
REFUSED_KEY = "invalid"
OWN_KEY = "sk-tenant-own-openai-key-31f5c0"


def test_a_tenants_own_key_is_used_for_its_requests_only(make_gateway, simulator, ledger_and_view):
    first, second = make_gateway(), make_gateway()
    admin = Admin(first.url)
    acme, beta = admin.tenant("acme"), admin.tenant("beta")
    admin.ok("PUT", "/admin/tenants/acme/provider-keys/openai", json={"api_key": REFUSED_KEY})
    time.sleep(1.2)  # the other process picks the tenant's state up within its cache period
    for gateway in (first, second):
        refused = chat(gateway, acme.key)
        assert refused.status_code == 502 and refused.json()["error"]["code"] == "upstream_auth_error"
        assert chat(gateway, beta.key).status_code == 200  # the gateway's own key, untouched
        assert chat(gateway, acme.key, model="anthropic/claude-3-5-haiku").status_code == 200  # not its provider
    admin.ok("PUT", "/admin/tenants/acme/provider-keys/openai", json={"api_key": OWN_KEY})
    time.sleep(1.2)
    for gateway in (first, second):
        answered = chat(gateway, acme.key)
        assert answered.status_code == 200, answered.text
    admin.ok("DELETE", "/admin/tenants/acme/provider-keys/openai")
    assert chat(first, acme.key).status_code == 200

    ledger, view = ledger_and_view
    events = ledger.event_dicts(ProviderCredential.create_id("acme", "openai"))
    assert [e["event"] for e in events] == ["Stored", "Replaced", "Removed"]
    cipher = CredentialCipher.from_env(MASTER_KEY)
    assert cipher.open("acme", "openai", events[1]["ciphertext"]) == OWN_KEY
    stored = [str(view.tenant_state("acme", "2026-01")), str(view.keys("acme")), str(view.tenants())]
    for text in (str(events), *stored, httpx.get(simulator.url + "/_sim/requests?last=50").text,
                 admin.get("/admin/tenants/acme").text):
        assert OWN_KEY not in text and MASTER_KEY not in text


def test_a_ciphertext_is_bound_to_its_tenant_and_provider():
    cipher = CredentialCipher.from_env(MASTER_KEY)
    sealed = cipher.seal("acme", "openai", OWN_KEY)
    assert OWN_KEY not in sealed and cipher.seal("acme", "openai", OWN_KEY) != sealed  # fresh nonce
    assert cipher.open("acme", "openai", sealed) == OWN_KEY
    for tenant, provider in (("beta", "openai"), ("acme", "google")):
        try:
            cipher.open(tenant, provider, sealed)
        except CredentialError:
            continue
        raise AssertionError("a ciphertext opened for another tenant or provider")
    other = CredentialCipher.from_env("ab" * 32)
    try:
        other.open("acme", "openai", sealed)
    except CredentialError:
        return
    raise AssertionError("a ciphertext opened under another master key")


def test_a_key_that_cannot_be_decrypted_fails_closed(make_gateway):
    first = make_gateway()
    admin = Admin(first.url)
    acme = admin.tenant("acme")
    admin.ok("PUT", "/admin/tenants/acme/provider-keys/openai", json={"api_key": OWN_KEY})
    wrong = make_gateway(master_key="cd" * 32)  # a gateway with another master key
    refused = chat(wrong, acme.key)
    assert refused.status_code == 503  # never the gateway's own key instead
    assert OWN_KEY not in refused.text
