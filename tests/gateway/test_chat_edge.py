"""POST /v1/chat/completions answers the same whether the ASGI edge serves it
(gateway/chat_edge.py, the default) or Quart's route does (TWOAPI_CHAT_EDGE=off)."""

from __future__ import annotations

import socket
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest

from gateway.bootstrap import ensure_demo_tenant
from gateway.chat_edge import ChatEdge
from tests.conftest import DEMO_KEY, open_ledger
from tests.support import RunningGateway, gateway_settings, start_gateway

AUTH = {"Authorization": f"Bearer {DEMO_KEY}"}
GOOD = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
LIMIT = 4096


@pytest.fixture(params=[True, False], ids=["edge", "quart"])
def gw(request, tmp_path, simulator) -> Any:
    settings = replace(gateway_settings(tmp_path / "data", simulator.url), max_body_bytes=LIMIT,
                       chat_edge=request.param)
    ledger = open_ledger(None, settings.data_dir)
    ensure_demo_tenant(ledger, DEMO_KEY)
    ledger.close()
    running = start_gateway(settings)
    yield running
    running.stop()


def post(gw: RunningGateway, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", AUTH)
    return httpx.post(gw.url + "/v1/chat/completions", timeout=10, **kwargs)


def code_of(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.status_code, response.json()["error"]["code"]


def test_the_edge_serves_the_route_only_when_it_is_on(gw):
    assert isinstance(gw.app.asgi_app, ChatEdge) is gw.settings.chat_edge


def test_a_completion_comes_back_through_the_official_sdk(gw):
    client = openai.OpenAI(base_url=gw.api_url, api_key=DEMO_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**GOOD)
    completion = raw.parse()
    assert completion.choices[0].message.content and completion.usage.total_tokens > 0
    assert raw.headers["x-request-id"] and raw.headers["content-type"].startswith("application/json")
    assert int(raw.headers["content-length"]) == len(raw.content)


def test_a_stream_comes_back_through_the_official_sdk(gw):
    client = openai.OpenAI(base_url=gw.api_url, api_key=DEMO_KEY, max_retries=0)
    chunks = list(client.chat.completions.create(**GOOD, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize(("request_kwargs", "expected"), [
    ({"headers": {}, "json": GOOD}, (401, "authentication_error")),
    ({"headers": {"Authorization": "Bearer 2api_nope"}, "json": GOOD}, (401, "authentication_error")),
    ({"content": b"{not json"}, (400, "invalid_json")),
    ({"json": {"model": "openai/gpt-4o-mini"}}, (400, "invalid_request")),
    ({"content": b"x" * (LIMIT + 1)}, (413, "request_too_large")),  # declared too large
    ({"content": "chunks"}, (413, "request_too_large")),  # streamed (chunked, no length) past the limit
], ids=["no-key", "unknown-key", "bad-json", "no-messages", "declared-too-large", "streamed-too-large"])
def test_bad_requests_get_the_same_envelope(gw, request_kwargs, expected):
    if request_kwargs.get("content") == "chunks":  # a fresh iterator for each run
        request_kwargs = {"content": iter([b"x" * 1024] * 5)}
    assert code_of(post(gw, **request_kwargs)) == expected


def test_other_methods_are_not_allowed(gw):
    response = httpx.get(gw.url + "/v1/chat/completions", headers=AUTH, timeout=10)
    assert code_of(response) == (405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_a_body_that_does_not_arrive_in_time_is_refused_naming_the_timeout(gw):
    if gw.settings.chat_edge:
        gw.app.asgi_app.body_timeout_s = 0.3
    else:
        gw.app.config["BODY_TIMEOUT"] = 0.3
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {DEMO_KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode()
    with socket.create_connection(("127.0.0.1", gw.settings.port), timeout=10) as conn:
        conn.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            more = conn.recv(65536)
            if not more:
                break
            answer += more
    status_line, _, rest = answer.partition(b"\r\n")
    # werkzeug's RequestTimeout in the envelope, as the app's HTTP error handler words it
    assert status_line.split()[1] == b"408", answer
    assert b'"code":"request_timeout"' in rest and b"within the specified time" in rest
