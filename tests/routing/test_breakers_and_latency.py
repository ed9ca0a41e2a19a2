"""The breaker's state machine and the latency estimator, in isolation."""

from __future__ import annotations

import time

from gateway.breakers import BreakerPolicy, Breakers
from gateway.latency import LatencyTracker

M = "openai/gpt-4o-mini"


def test_consecutive_failures_open_the_circuit():
    breakers = Breakers(BreakerPolicy(consecutive=3, cooldown_s=60))
    assert [breakers.record(M, ok=False) for _ in range(2)] == [None, None]
    opened = breakers.record(M, ok=False)
    assert opened.to == "open" and "3 consecutive" in opened.reason
    assert not breakers.allow(M) and breakers.state(M) == "open"


def test_a_failure_rate_over_the_window_opens_the_circuit():
    breakers = Breakers(BreakerPolicy(consecutive=100, min_requests=10, failure_rate=0.5, cooldown_s=60))
    transitions = [breakers.record(M, ok=i % 2 == 0) for i in range(10)]
    assert transitions[-1] is not None and transitions[-1].to == "open"
    assert "5/10" in transitions[-1].reason


def test_half_open_admits_limited_probes_and_closes_on_success():
    breakers = Breakers(BreakerPolicy(consecutive=1, cooldown_s=0.05, probes=1))
    breakers.record(M, ok=False)
    assert not breakers.allow(M)
    time.sleep(0.06)
    assert breakers.state(M) == "half_open"
    assert breakers.allow(M) is True
    assert breakers.allow(M) is False  # one probe at a time
    closed = breakers.record(M, ok=True)
    assert closed.to == "closed" and breakers.allow(M)


def test_a_failed_probe_reopens_the_circuit():
    breakers = Breakers(BreakerPolicy(consecutive=1, cooldown_s=0.05))
    breakers.record(M, ok=False)
    time.sleep(0.06)
    assert breakers.allow(M)
    assert breakers.record(M, ok=False).to == "open"
    assert not breakers.allow(M)


def test_adopting_shared_state_opens_and_closes_without_a_transition():
    breakers = Breakers()
    breakers.adopt(M, time.time() + 30)
    assert breakers.state(M) == "open" and not breakers.allow(M)
    breakers.adopt(M, None)
    assert breakers.state(M) == "closed"


def test_peak_ewma_jumps_up_at_once_and_decays_down_smoothly():
    tracker = LatencyTracker(tau_s=0.2)
    tracker.observe(M, 10.0, 100.0)
    tracker.observe(M, 500.0, 100.0)
    assert tracker.estimate(M).ttft_ms == 500.0
    time.sleep(0.2)
    tracker.observe(M, 10.0, 100.0)
    assert 10.0 < tracker.estimate(M).ttft_ms < 500.0


def test_an_unmeasured_model_is_expected_fastest_so_it_gets_measured():
    tracker = LatencyTracker()
    tracker.observe(M, 1.0, 10_000.0)
    assert tracker.expected_ms("anthropic/claude-3-5-haiku", 256) == 0.0 < tracker.expected_ms(M, 256)
