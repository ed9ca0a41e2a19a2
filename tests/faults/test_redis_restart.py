"""Redis stopped and restarted under two gateways that share circuit-breaker state.

A private redis-server (tests/faults/private_redis.py), never the machine's own: while
it is up, a circuit one gateway opens is seen by the other; while it is down, both keep
serving with in-process breakers (one that opens then protects its own process); when
it returns, the circuits opened during the outage reach Redis and the other gateway,
and sharing goes on as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import openai
import pytest

from tests.faults.private_redis import PrivateRedis
from tests.routing.conftest import Sim, client_of
from tests.support import RunningGateway

FAILING_BEFORE = "openai/gpt-4o-mini"  # fails while Redis is up
FAILING_DURING = "google/gemini-1.5-flash"  # fails while Redis is down
FAILING_AFTER = "openai/gpt-4o"  # fails after Redis is back
HEALTHY = "anthropic/claude-3-5-haiku"


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.remove()


def ask(gateway: RunningGateway, model: str) -> tuple[int, str | None]:
    try:
        client_of(gateway).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError as error:
        return error.status_code, error.code
    return 200, None


def circuit(gateway: RunningGateway, model: str) -> str:
    return gateway.app.extensions["twoapi"].breakers.state(model)


def shared_healthy(gateway: RunningGateway) -> bool:
    return gateway.app.extensions["twoapi"].shared.healthy


def until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def trip(gateway: RunningGateway, sim: Sim, model: str) -> None:
    """Make the provider fail `model` and ask `gateway` for it until its circuit opens:
    each request fails with a classified error (the provider's, or the open circuit's),
    never a 500."""
    provider, name = model.split("/", 1)
    sim.fault(provider=provider, model=name, mode="status", status=500)
    for _ in range(5):
        assert ask(gateway, model) in ((502, "upstream_error"), (503, "provider_unavailable"))
        if circuit(gateway, model) == "open":
            return
    raise AssertionError(f"the circuit of {model} did not open")


def test_circuit_state_is_shared_again_after_redis_stops_and_returns(make_gateway, sim, private_redis):
    settings = {"redis_url": private_redis.url, "breaker_cooldown_s": 60.0}
    one, two = make_gateway(**settings), make_gateway(**settings)
    assert until(lambda: shared_healthy(one) and shared_healthy(two))

    # Redis up: a circuit `one` opens is open in `two` within a moment.
    trip(one, sim, FAILING_BEFORE)
    assert until(lambda: circuit(two, FAILING_BEFORE) == "open")
    assert ask(two, FAILING_BEFORE) == (503, "provider_unavailable")

    # Redis gone: both keep serving, breakers in-process.
    private_redis.stop()
    for gateway in (one, two):
        started = time.monotonic()
        assert [ask(gateway, HEALTHY) for _ in range(5)] == [(200, None)] * 5
        assert time.monotonic() - started < 5
    assert until(lambda: not shared_healthy(one) and not shared_healthy(two))
    trip(one, sim, FAILING_DURING)
    assert ask(one, FAILING_DURING) == (503, "provider_unavailable")  # it protects its own process
    assert circuit(two, FAILING_DURING) == "closed"  # nothing is shared while Redis is down
    assert circuit(two, FAILING_BEFORE) == "open"  # what was learnt before stays

    # Redis back (empty: it kept nothing): the circuit opened during the outage reaches
    # Redis and `two`, and `one` keeps it open rather than forgetting it.
    private_redis.start()
    assert until(lambda: shared_healthy(one) and shared_healthy(two), timeout=10)
    assert until(lambda: circuit(two, FAILING_DURING) == "open"), "an outage-time circuit was not shared"
    assert circuit(one, FAILING_DURING) == "open"
    assert circuit(one, FAILING_BEFORE) == "open" and circuit(two, FAILING_BEFORE) == "open"
    assert ask(two, FAILING_DURING) == (503, "provider_unavailable")

    # And sharing goes on as before.
    trip(two, sim, FAILING_AFTER)
    assert until(lambda: circuit(one, FAILING_AFTER) == "open")
    assert ask(one, FAILING_AFTER) == (503, "provider_unavailable")
    assert [ask(gateway, HEALTHY) for gateway in (one, two)] == [(200, None)] * 2
