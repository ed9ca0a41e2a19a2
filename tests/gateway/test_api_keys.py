"""Keys are valid only when issued and not revoked; only their hash is stored."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from ledger.application import hash_key
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
