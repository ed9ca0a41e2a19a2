"""Rate limits: per key and per tenant, shared by gateway processes through a real Redis,
refilling on time, answered with 429 `rate_limited`, `retry-after` and OpenAI's
x-ratelimit-* headers; in-process when Redis is absent or goes away, never a 500."""

from __future__ import annotations

import contextlib
import math
import re
import socket
import threading
import time

import httpx
import pytest

from gateway import limits
from tests.support import free_port
from tests.tenancy.conftest import REDIS_URL, Admin, chat

HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
TOKEN_HEADERS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
DURATION = re.compile(r"^(\d+ms|\d+(\.\d+)?s|\d+m\d+s)$")


@pytest.fixture
def store_url() -> None:  # limits live in Redis or in-process, whatever the ledger's store
    return None


def test_an_rpm_limit_holds_across_two_gateways_sharing_redis(make_gateway):
    first, second = make_gateway(redis_url=REDIS_URL), make_gateway(redis_url=REDIS_URL)
    admin = Admin(first.url)
    tenant = admin.tenant("acme", keys=2)
    admin.limits("acme", rpm=20)
    started = time.monotonic()
    responses = [chat(gateway, key["key"]) for _ in range(8) for gateway in (first, second) for key in tenant.keys]
    refilled = math.ceil((time.monotonic() - started) * 20 / 60)  # one unit every 3 s
    statuses = [r.status_code for r in responses]
    assert 20 <= statuses.count(200) <= 20 + refilled, statuses
    assert statuses[:20] == [200] * 20 and set(statuses) == {200, 429}
    refused = next(r for r in reversed(responses) if r.status_code == 429)
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 3
    assert refused.headers["x-ratelimit-limit-requests"] == "20"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert DURATION.match(refused.headers["x-ratelimit-reset-requests"])


def test_a_key_limit_refills_on_time_and_its_headers_say_when(make_gateway):
    first, second = make_gateway(redis_url=REDIS_URL), make_gateway(redis_url=REDIS_URL)
    admin = Admin(first.url)
    tenant = admin.tenant("acme", rpm=30)  # one request every 2 s, bursts of 30
    other = admin.tenant("beta")  # not limited by acme's key
    started = time.monotonic()
    ok = [chat(gw, tenant.key) for gw in (first, second) for _ in range(15)]
    assert [r.status_code for r in ok] == [200] * 30
    assert [int(r.headers["x-ratelimit-remaining-requests"]) for r in ok[:3]] == [29, 28, 27]
    extra = 0
    while (refused := chat(first, tenant.key)).status_code == 200:  # units refilled during a slow burst
        extra += 1
        assert extra <= (time.monotonic() - started) / 2 + 1
    assert refused.status_code == 429
    reset = refused.headers["x-ratelimit-reset-requests"]
    assert reset.startswith(("5", "1m")), reset  # about a minute until the burst is whole again
    wait_s = int(refused.headers["retry-after-ms"]) / 1000
    assert 0 < wait_s <= 2.0
    assert chat(second, other.key).status_code == 200
    time.sleep(wait_s + 0.05)
    admitted = chat(second, tenant.key)
    assert admitted.status_code == 200  # refilled on time...
    admitted_at = time.monotonic()
    next_one = chat(first, tenant.key)
    if time.monotonic() - admitted_at < 1.5:  # (on a loaded machine a request can take long)
        assert next_one.status_code == 429  # ...by one request: the next is 2 s later
    time.sleep(2.05)
    assert chat(first, tenant.key).status_code == 200


def test_tokens_per_minute_count_actual_usage(make_gateway):
    gateway = make_gateway(redis_url=REDIS_URL)
    admin = Admin(gateway.url)
    tenant = admin.tenant("acme")
    admin.limits("acme", tpm=150)
    statuses = []
    for _ in range(12):
        response = chat(gateway, tenant.key)
        statuses.append(response.status_code)
        assert all(h in response.headers for h in TOKEN_HEADERS)
        assert response.headers["x-ratelimit-limit-tokens"] == "150"
        if response.status_code == 429:
            break
    assert statuses[0] == 200 and statuses[-1] == 429
    assert "tokens" in response.json()["error"]["message"]


def test_rate_limit_headers_on_every_admitted_response(make_gateway):
    gateway = make_gateway(redis_url=REDIS_URL)
    admin = Admin(gateway.url)
    tenant = admin.tenant("acme", rpm=1000, tpm=1_000_000)
    plain = chat(gateway, tenant.key)
    with httpx.stream("POST", gateway.api_url + "/chat/completions", headers={"Authorization": f"Bearer {tenant.key}"},
                      json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                            "stream": True}) as streamed:
        streamed.read()
    broke = admin.tenant("broke", credits=None, rpm=1000)
    refused = chat(gateway, broke.key)
    assert refused.status_code == 402
    for response in (plain, streamed, refused):
        for header in HEADERS:
            assert header in response.headers, (response.status_code, header)
    for header in TOKEN_HEADERS:
        assert header in plain.headers and header in streamed.headers
    assert plain.headers["x-ratelimit-limit-requests"] == "1000"
    assert int(plain.headers["x-ratelimit-remaining-tokens"]) < 1_000_000


def test_without_redis_limits_are_kept_in_each_process(make_gateway):
    gateway = make_gateway(redis_url=None)
    admin = Admin(gateway.url)
    tenant = admin.tenant("acme", rpm=5)
    statuses = [chat(gateway, tenant.key).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2


class RedisProxy:
    """A TCP proxy in front of Redis that can be cut, to take Redis away mid-test."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", 6379))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class Recorder:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict]] = []

    def warning(self, event: str, **fields) -> None:
        self.warnings.append((event, fields))


def test_when_redis_goes_away_limits_continue_in_process_with_a_warning(make_gateway, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(limits, "log", recorder)
    proxy = RedisProxy()
    gateway = make_gateway(redis_url=proxy.url)
    admin = Admin(gateway.url)
    tenant = admin.tenant("acme", rpm=1000)
    assert chat(gateway, tenant.key).status_code == 200
    proxy.cut()
    statuses = [chat(gateway, tenant.key).status_code for _ in range(20)]
    assert statuses == [200] * 20  # never a 500
    admin.limits("acme", rpm=3)
    time.sleep(1.2)  # the tenant's cached state expires
    limited = [chat(gateway, tenant.key).status_code for _ in range(5)]
    assert 429 in limited and 500 not in limited
    assert [event for event, _ in recorder.warnings] == ["redis_unavailable"]
    assert "in-process" in recorder.warnings[0][1]["what"]
    assert gateway.app.extensions["twoapi"].limiter.healthy is False
    revived = RedisProxy(proxy.port)
    try:
        time.sleep(1.2)
        responses = [chat(gateway, tenant.key) for _ in range(4)]
        assert {r.status_code for r in responses} <= {200, 429}
        assert [event for event, _ in recorder.warnings] == ["redis_unavailable", "redis_recovered"]
    finally:
        revived.cut()
