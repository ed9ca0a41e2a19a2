"""Two processes' worth of breaker and latency state, synced through a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

from gateway.breakers import BreakerPolicy, Breakers
from gateway.latency import LatencyTracker
from gateway.shared_state import SharedState
from tests.routing.conftest import REDIS_URL

M = "anthropic/claude-3-5-haiku"


def pair(prefix: str) -> list[SharedState]:
    return [
        SharedState(REDIS_URL, Breakers(BreakerPolicy(consecutive=1, cooldown_s=5)), LatencyTracker(), [M],
                    interval_s=0.05, prefix=prefix)
        for _ in range(2)
    ]


async def test_latency_estimates_flow_between_processes(redis_available):
    one, two = pair("test-" + uuid.uuid4().hex[:8])
    await one.start()
    await two.start()
    try:
        one.latency.observe(M, 420.0, 80.0)
        deadline = time.monotonic() + 3
        while M not in two.latency.snapshot() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert two.latency.estimate(M).ttft_ms == 420.0
    finally:
        await one.stop()
        await two.stop()


async def test_an_opened_circuit_is_seen_by_the_other_process_and_its_closing_too(redis_available):
    one, two = pair("test-" + uuid.uuid4().hex[:8])
    await one.start()
    await two.start()
    try:
        opened = one.breakers.record(M, ok=False)
        one.publish_circuit(opened)
        await _until(lambda: two.breakers.state(M) == "open")
        one.breakers.adopt(M, None)
        one.publish_circuit(type(opened)(M, "closed", "probe succeeded"))
        await _until(lambda: two.breakers.state(M) == "closed")
    finally:
        await one.stop()
        await two.stop()


async def test_redis_unreachable_leaves_state_in_process():
    state = SharedState("redis://127.0.0.1:1/0", Breakers(), LatencyTracker(), [M], interval_s=0.05)
    await state.start()
    try:
        state.latency.observe(M, 10.0, 100.0)
        await asyncio.sleep(0.2)
        assert state.latency.estimate(M).ttft_ms == 10.0
        assert state.healthy is False
    finally:
        await state.stop()


async def _until(check, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "state did not propagate"
        await asyncio.sleep(0.05)
