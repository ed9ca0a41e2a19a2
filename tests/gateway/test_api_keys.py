"""Keys are valid only when issued and not revoked; only their hash is stored."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from gateway.auth import KeyAuthenticator
from gateway.errors import GatewayError
from ledger.application import Ledger, hash_key
from tests.conftest import DEMO_KEY

MESSAGES = [{"role": "user", "content": "hi"}]


def chat(gateway, key: str):
    client = openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0)
    return client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)


def test_a_well_formed_but_unissued_key_is_401(gateway):
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(gateway, "2api_" + "A" * 43)
    assert caught.value.code == "authentication_error"


def test_a_missing_key_is_401(gateway):
    response = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "x", "messages": MESSAGES})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_error"


def test_a_non_bearer_scheme_is_401(gateway):
    response = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Basic {DEMO_KEY}"})
    assert response.status_code == 401


def test_an_issued_key_works_and_stops_working_within_a_second_of_revocation(gateway, ledger_of):
    issued = ledger_of.issue_key("demo", label="short-lived")
    assert chat(gateway, issued.secret).choices[0].message.content
    ledger_of.revoke_key(issued.key_id, reason="test")
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, issued.secret)


def test_only_the_hash_of_a_key_is_stored(ledger_of):
    issued = ledger_of.issue_key("demo", label="stored")
    key = ledger_of.find_key(hash_key(issued.secret))
    assert key is not None and key.tenant == "demo"
    stored = repr(ledger_of.event_dicts(key.id))
    assert issued.secret not in stored
    assert hash_key(issued.secret) in stored


class CountingAuthenticator(KeyAuthenticator):
    """The real authenticator over the real ledger, counting its reads."""

    def __init__(self, ledger: Ledger, ttl_s: float) -> None:
        super().__init__(ledger, ttl_s)
        self.reads = 0

    def _lookup(self, key_hash: str):
        self.reads += 1
        return super()._lookup(key_hash)


def test_a_key_in_use_is_read_again_in_the_background_and_a_revocation_still_holds_within_the_ttl(tmp_path):
    ledger = Ledger.open(None, tmp_path / "ledger")
    ledger.create_tenant("acme")
    issued = ledger.issue_key("acme", label="busy")
    auth = CountingAuthenticator(ledger, ttl_s=0.4)
    header = f"Bearer {issued.secret}"

    async def scenario():
        waited = 0  # reads a request waited for
        started = time.monotonic()
        while time.monotonic() - started < 1.6:  # a request every 20 ms
            before = auth.reads
            assert (await auth.authenticate(header)).tenant == "acme"
            waited += auth.reads - before
            await asyncio.sleep(0.02)
        background = auth.reads - waited
        ledger.revoke_key(issued.key_id, reason="test")
        revoked_at = time.monotonic()
        while True:
            try:
                await auth.authenticate(header)
            except GatewayError as refused:
                assert refused.code == "authentication_error"
                return waited, background, time.monotonic() - revoked_at
            await asyncio.sleep(0.02)

    try:
        waited, background, refused_after = asyncio.run(scenario())
    finally:
        ledger.close()
    assert waited == 1  # only the first request read the key itself
    assert background >= 3  # the others' answers were refreshed behind them
    assert refused_after <= 0.4 + 0.1  # never an answer older than the TTL
