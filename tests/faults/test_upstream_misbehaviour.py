"""Every way the simulator can misbehave gets a classified error and the right
retry or fallback from the gateway; never a 500 of ours."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from gateway.bootstrap import ensure_demo_tenant
from gateway.breakers import Breakers
from ledger.application import Ledger
from tests.conftest import DEMO_KEY
from tests.routing.conftest import ledger_events
from tests.support import gateway_settings, start_gateway

OPENAI, ANTHROPIC, GOOGLE = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "google/gemini-1.5-flash"
PRIMARY = {"openai": OPENAI, "anthropic": ANTHROPIC, "google": GOOGLE}
FALLBACK = {"openai": GOOGLE, "anthropic": OPENAI, "google": ANTHROPIC}

# (fault, the code the gateway classifies it as, the HTTP status it answers when there is no fallback)
FAULTS = [
    ({"mode": "status", "status": 500}, "upstream_error", 502),
    ({"mode": "status", "status": 503}, "upstream_error", 502),
    ({"mode": "status", "status": 429, "retry_after": None}, "upstream_rate_limited", 429),
    ({"mode": "timeout"}, "upstream_timeout", 504),
    ({"mode": "disconnect"}, "upstream_error", 502),
    ({"mode": "malformed"}, "upstream_error", 502),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, simulator):
    """One gateway for the module: circuits never open here, and each test sets its
    own faults on a reset simulator."""
    settings = replace(
        gateway_settings(tmp_path_factory.mktemp("misbehaviour"), simulator.url),
        upstream_timeout_s=0.3, breaker_consecutive=10_000,
    )
    ledger = Ledger.open(None, settings.data_dir)
    ensure_demo_tenant(ledger, DEMO_KEY)
    ledger.close()
    running = start_gateway(settings)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def fresh_circuits(gateway):
    """Each test starts with every circuit closed (earlier tests' failures forgotten)."""
    services = gateway.app.extensions["twoapi"]
    services.breakers = Breakers(services.breakers.policy)


def chat(gateway, model: str, stream: bool, fallbacks: list[str]) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, "models": fallbacks}
    return httpx.post(gateway.api_url + "/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {DEMO_KEY}"})


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("provider", list(PRIMARY))
@pytest.mark.parametrize(("fault", "code", "status"), FAULTS, ids=[f[1] + "-" + f[0]["mode"] for f in FAULTS])
def test_a_misbehaving_provider_is_classified_and_fallen_back_from(gateway, sim, provider, stream, fault, code, status):
    sim.fault(provider=provider, **fault)

    alone = chat(gateway, PRIMARY[provider], stream, [])
    assert alone.status_code == status, alone.text
    assert alone.json()["error"]["code"] == code

    rescued = chat(gateway, PRIMARY[provider], stream, [FALLBACK[provider]])
    assert rescued.status_code == 200, rescued.text
    assert rescued.headers["x-2api-model"] == FALLBACK[provider]
    if stream:
        assert rescued.text.rstrip().endswith("data: [DONE]")
    events = ledger_events(gateway, rescued.headers["x-request-id"])
    failed = [e for e in events if e["event"] == "AttemptFailed"]
    assert failed and {e["error_code"] for e in failed} == {code}
    assert events[-1]["event"] == "Completed"


def test_anthropic_overloaded_529_is_retryable_and_answered_503(gateway, sim):
    sim.fault(provider="anthropic", mode="status", status=529)
    alone = chat(gateway, PRIMARY["anthropic"], False, [])
    assert alone.status_code == 503 and alone.json()["error"]["code"] == "upstream_overloaded"
    rescued = chat(gateway, PRIMARY["anthropic"], False, [FALLBACK["anthropic"]])
    assert rescued.status_code == 200


@pytest.mark.parametrize("after_chunks", [2, 5])
@pytest.mark.parametrize("mode", ["disconnect", "malformed", "timeout", "status"])
def test_a_stream_breaking_after_its_first_chunk_ends_with_a_classified_error_event(gateway, sim, mode, after_chunks):
    sim.fault(provider="openai", mode=mode, status=500, after_chunks=after_chunks, stream=True)
    response = chat(gateway, PRIMARY["openai"], True, [FALLBACK["openai"]])
    assert response.status_code == 200
    frames = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] != "[DONE]"
    assert '"error"' in frames[-1] and '"code":"upstream_' in frames[-1]
    events = ledger_events(gateway, response.headers["x-request-id"])
    assert [e["event"] for e in events][-1] == "Failed"
    assert [e["model"] for e in events if e["event"] == "AttemptStarted"] == [PRIMARY["openai"]]
