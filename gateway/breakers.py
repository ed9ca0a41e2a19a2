"""Circuit breakers, one per catalog model (provider/model).

closed -> open: on `consecutive` failures in a row, or when the failure rate over the
last `window_s` seconds reaches `failure_rate` with at least `min_requests` attempts.
open -> half-open: after `cooldown_s`; then at most `probes` requests go through at
once. half-open -> closed on a probe's success; -> open again on a probe's failure.

Only retryable upstream failures count (a 400 for a bad prompt says nothing about the
provider's health). A process that learns from shared state (Redis) that another
process opened a circuit opens its own until the same time, without a transition of
its own to report.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    window_s: float = 30.0
    min_requests: int = 10
    failure_rate: float = 0.5
    consecutive: int = 5
    cooldown_s: float = 10.0
    probes: int = 1


@dataclass(frozen=True, slots=True)
class Transition:
    model: str
    to: State
    reason: str
    open_until: float | None = None  # wall-clock seconds, for sharing


@dataclass(slots=True)
class Circuit:
    state: State = "closed"
    open_until: float = 0.0  # wall clock
    consecutive_failures: int = 0
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    probes_in_flight: int = 0


class Breakers:
    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self._circuits: dict[str, Circuit] = {}

    def _circuit(self, model: str) -> Circuit:
        circuit = self._circuits.get(model)
        if circuit is None:
            circuit = self._circuits[model] = Circuit()
        return circuit

    def state(self, model: str) -> State:
        circuit = self._circuits.get(model)
        if circuit is None:
            return "closed"
        if circuit.state == "open" and time.time() >= circuit.open_until:
            return "half_open"
        return circuit.state

    def allow(self, model: str) -> bool:
        """May an attempt go to this model now? A True in half-open takes a probe slot,
        given back by `record`."""
        circuit = self._circuits.get(model)
        if circuit is None or circuit.state == "closed":
            return True
        if circuit.state == "open":
            if time.time() < circuit.open_until:
                return False
            circuit.state = "half_open"
            circuit.probes_in_flight = 0
        if circuit.probes_in_flight >= self.policy.probes:
            return False
        circuit.probes_in_flight += 1
        return True

    def record(self, model: str, ok: bool) -> Transition | None:
        """Note an attempt's outcome; the state change it caused, if any."""
        circuit = self._circuit(model)
        now_mono, now = time.monotonic(), time.time()
        if circuit.state == "half_open":
            circuit.probes_in_flight = max(0, circuit.probes_in_flight - 1)
            if ok:
                self._reset(circuit)
                return Transition(model, "closed", "half-open probe succeeded")
            return self._open(model, circuit, now, "half-open probe failed")
        if circuit.state == "open":
            return None  # an attempt that started before the circuit opened
        outcomes = circuit.outcomes
        outcomes.append((now_mono, ok))
        horizon = now_mono - self.policy.window_s
        while outcomes and outcomes[0][0] < horizon:
            outcomes.popleft()
        if ok:
            circuit.consecutive_failures = 0
            return None
        circuit.consecutive_failures += 1
        if circuit.consecutive_failures >= self.policy.consecutive:
            return self._open(model, circuit, now, f"{circuit.consecutive_failures} consecutive failures")
        failures = sum(1 for _, success in outcomes if not success)
        if len(outcomes) >= self.policy.min_requests and failures / len(outcomes) >= self.policy.failure_rate:
            reason = f"{failures}/{len(outcomes)} attempts failed in {self.policy.window_s:g}s"
            return self._open(model, circuit, now, reason)
        return None

    def release(self, model: str) -> None:
        """Give back a half-open probe slot taken by `allow` whose attempt never ran."""
        circuit = self._circuits.get(model)
        if circuit is not None and circuit.state == "half_open":
            circuit.probes_in_flight = max(0, circuit.probes_in_flight - 1)

    def adopt(self, model: str, open_until: float | None) -> None:
        """Take on shared state: another process opened (or closed) this circuit."""
        circuit = self._circuit(model)
        if open_until and open_until > time.time():
            if circuit.state != "open" or circuit.open_until < open_until:
                circuit.state, circuit.open_until = "open", open_until
        elif open_until is None and circuit.state == "open" and circuit.open_until > time.time():
            self._reset(circuit)

    def open_circuits(self) -> dict[str, float]:
        return {m: c.open_until for m, c in self._circuits.items() if c.state == "open"}

    def _open(self, model: str, circuit: Circuit, now: float, reason: str) -> Transition:
        circuit.state = "open"
        circuit.open_until = now + self.policy.cooldown_s
        circuit.probes_in_flight = 0
        circuit.outcomes.clear()
        circuit.consecutive_failures = 0
        return Transition(model, "open", reason, circuit.open_until)

    @staticmethod
    def _reset(circuit: Circuit) -> None:
        circuit.state = "closed"
        circuit.open_until = 0.0
        circuit.consecutive_failures = 0
        circuit.outcomes.clear()
        circuit.probes_in_flight = 0
