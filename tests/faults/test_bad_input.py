"""Hostile and malformed input: always a clear 4xx in the envelope, never a 500."""

from __future__ import annotations

import httpx
import pytest

from gateway.validation import CHAT_FIELDS
from tests.conftest import DEMO_KEY

AUTH = {"Authorization": f"Bearer {DEMO_KEY}"}
GOOD = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
WRONG_VALUES = [None, True, 0, -1, 1.5, 1e308, "", "x" * 10_000, [], [1, "a", None], {}, {"a": {"b": [None]}}]


@pytest.fixture(params=["sqlite"])
def store_url(request):
    return None


def post(gateway, content: bytes, headers: dict | None = None) -> httpx.Response:
    return httpx.post(gateway.api_url + "/chat/completions", content=content,
                      headers={**AUTH, "content-type": "application/json", **(headers or {})}, timeout=20)


def test_wrong_types_in_every_field_are_never_a_server_error(gateway):
    import orjson

    seen = set()
    with httpx.Client(timeout=20, headers=AUTH) as client:
        for field in CHAT_FIELDS:
            for value in WRONG_VALUES:
                body = {**GOOD, field: value}
                response = client.post(gateway.api_url + "/chat/completions", content=orjson.dumps(body),
                                       headers={"content-type": "application/json"})
                seen.add(response.status_code)
                assert response.status_code < 500, (field, value, response.text)
                if response.status_code >= 400:
                    assert response.json()["error"]["code"], (field, value)
    assert 400 in seen


def test_message_fields_of_wrong_types_are_never_a_server_error(gateway):
    import orjson

    with httpx.Client(timeout=20, headers=AUTH) as client:
        for key in ("role", "content", "name", "tool_calls", "tool_call_id"):
            for value in WRONG_VALUES:
                message = {"role": "user", "content": "hi", key: value}
                body = {**GOOD, "messages": [message]}
                response = client.post(gateway.api_url + "/chat/completions", content=orjson.dumps(body),
                                       headers={"content-type": "application/json"})
                assert response.status_code < 500, (key, value, response.text)


def test_deeply_nested_json_is_400(gateway):
    depth = 100_000
    response = post(gateway, b'{"model": "x", "messages": ' + b"[" * depth + b"]" * depth + b"}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_numbers_out_of_range_are_400(gateway):
    for raw in (b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": '
                b"1" + b"0" * 40 + b"}",
                b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], '
                b'"temperature": 1e999}'):
        response = post(gateway, raw)
        assert response.status_code == 400, response.text


def test_a_huge_string_within_the_limit_is_served(gateway):
    import orjson

    # Big enough to need a model with a long context window.
    body = {"model": "google/gemini-1.5-flash", "messages": [{"role": "user", "content": "word " * 400_000}]}
    response = post(gateway, orjson.dumps(body))
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] > 400_000


def test_header_injection_through_the_model_name_goes_nowhere(gateway):
    import orjson

    body = {**GOOD, "model": "openai/gpt-4o-mini\r\nx-injected: yes"}
    response = post(gateway, orjson.dumps(body))
    assert response.status_code == 404
    assert "x-injected" not in response.headers


def test_a_wrong_content_type_with_a_json_body_is_still_parsed_or_refused_cleanly(gateway):
    import orjson

    response = post(gateway, orjson.dumps(GOOD), headers={"content-type": "text/plain"})
    assert response.status_code in (200, 400, 415)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_on_chat_are_405_with_allow(gateway, method):
    response = httpx.request(method, gateway.api_url + "/chat/completions", headers=AUTH)
    assert response.status_code == 405 and "POST" in response.headers["allow"]
