"""Bad input gets a clear 4xx in OpenAI's error envelope, never a 500."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import DEMO_KEY

AUTH = {"Authorization": f"Bearer {DEMO_KEY}"}
GOOD = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def post_chat(gateway, body=None, content: bytes | None = None, headers=None) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json=body if content is None else None,
        content=content,
        headers={**AUTH, **(headers or {})},
        timeout=10,
    )


def assert_envelope(response: httpx.Response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.fixture(params=["sqlite"])
def store_url(request):
    """These tests are about the edge, not the store: SQLite is enough."""
    return None


def test_unknown_model_is_404_model_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as caught:
        openai.OpenAI(base_url=gateway.api_url, api_key=DEMO_KEY, max_retries=0).chat.completions.create(
            model="openai/gpt-9-imaginary", messages=GOOD["messages"]
        )
    assert caught.value.code == "model_not_found"
    assert caught.value.response.headers["x-request-id"].startswith("req_")


def test_malformed_json_is_400_invalid_json(gateway):
    assert_envelope(post_chat(gateway, content=b'{"model": "openai/gpt-4o-mini", "messages": ['), 400, "invalid_json")


def test_body_that_is_not_an_object_is_400(gateway):
    assert_envelope(post_chat(gateway, content=b"[1, 2, 3]"), 400, "invalid_json")


def test_invalid_utf8_is_400(gateway):
    assert_envelope(post_chat(gateway, content=b'{"model": "\xff\xfe"}'), 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": GOOD["messages"]}, "model"),
        ({"model": "openai/gpt-4o-mini"}, "messages"),
        ({**GOOD, "messages": []}, "messages"),
        ({**GOOD, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({**GOOD, "messages": [{"role": "user"}]}, "messages[0].content"),
        ({**GOOD, "messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({**GOOD, "messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content[0]"),
        ({**GOOD, "temperature": 7}, "temperature"),
        ({**GOOD, "temperature": "hot"}, "temperature"),
        ({**GOOD, "top_p": -1}, "top_p"),
        ({**GOOD, "max_tokens": 0}, "max_tokens"),
        ({**GOOD, "max_tokens": True}, "max_tokens"),
        ({**GOOD, "stream": "yes"}, "stream"),
        ({**GOOD, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({**GOOD, "stream_options": {"include_usage": True}}, "stream_options"),
        ({**GOOD, "temprature": 1}, "temprature"),
        ({**GOOD, "model": ""}, "model"),
    ],
)
def test_schema_violations_are_400_naming_the_field(gateway, body, param):
    assert_envelope(post_chat(gateway, body), 400, "invalid_request", param)


def test_body_over_the_limit_is_413(gateway):
    huge = {**GOOD, "messages": [{"role": "user", "content": "x" * (gateway.settings.max_body_bytes + 10)}]}
    assert_envelope(post_chat(gateway, huge), 413, "request_too_large")


def test_unknown_endpoint_is_404_in_the_envelope(gateway):
    assert_envelope(httpx.get(gateway.url + "/v1/nothing-here", headers=AUTH), 404, "not_found")


def test_wrong_method_is_405_in_the_envelope(gateway):
    assert_envelope(httpx.get(gateway.url + "/v1/chat/completions", headers=AUTH), 405, "method_not_allowed")


def test_health_needs_no_key(gateway):
    assert httpx.get(gateway.url + "/health").json() == {"status": "ok"}
