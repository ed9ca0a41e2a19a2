"""Live latency estimates per model, for `latency` routing.

Peak-EWMA (as Finagle and Helicone use): a sample above the estimate replaces it at
once, a sample below pulls it down smoothly with a time constant of `tau_s`. So a model
that slows down loses traffic on the next request, and one that recovers wins it back
over a few seconds. An estimate not refreshed for `stale_s` relaxes toward the
(optimistic) prior, so a model that lost all its traffic gets tried again rather than
being shunned forever.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(slots=True)
class Estimate:
    ttft_ms: float
    tokens_per_s: float
    updated: float  # monotonic seconds
    samples: int = 0


# Optimistic: a model not yet observed looks fast, so each one gets tried (and so
# measured) before the estimates decide, and a stale estimate drifts back here.
PRIOR = Estimate(ttft_ms=50.0, tokens_per_s=500.0, updated=0.0)


class LatencyTracker:
    def __init__(self, tau_s: float = 5.0, stale_s: float = 30.0) -> None:
        self.tau_s = tau_s
        self.stale_s = stale_s
        self._estimates: dict[str, Estimate] = {}

    def observe(self, model: str, ttft_ms: float, tokens_per_s: float | None) -> None:
        now = time.monotonic()
        current = self._estimates.get(model)
        if current is None:
            self._estimates[model] = Estimate(ttft_ms, tokens_per_s or PRIOR.tokens_per_s, now, 1)
            return
        weight = math.exp(-(now - current.updated) / self.tau_s)
        current.ttft_ms = ttft_ms if ttft_ms > current.ttft_ms else weight * current.ttft_ms + (1 - weight) * ttft_ms
        if tokens_per_s:
            # For throughput the pessimistic side is the low one.
            current.tokens_per_s = (
                tokens_per_s if tokens_per_s < current.tokens_per_s
                else weight * current.tokens_per_s + (1 - weight) * tokens_per_s
            )
        current.updated = now
        current.samples += 1

    def observe_total(self, model: str, latency_ms: float, output_tokens: int) -> None:
        """A non-streamed answer shows only its total time: split it with the current
        throughput estimate."""
        generation_ms = 1000.0 * output_tokens / max(self.estimate(model).tokens_per_s, 1e-3)
        self.observe(model, max(latency_ms - generation_ms, 0.0), None)

    def estimate(self, model: str) -> Estimate:
        current = self._estimates.get(model)
        if current is None:
            return PRIOR
        age = time.monotonic() - current.updated
        if age <= self.stale_s:
            return current
        relax = math.exp(-(age - self.stale_s) / self.stale_s)
        return Estimate(
            ttft_ms=relax * current.ttft_ms + (1 - relax) * PRIOR.ttft_ms,
            tokens_per_s=relax * current.tokens_per_s + (1 - relax) * PRIOR.tokens_per_s,
            updated=current.updated,
            samples=current.samples,
        )

    def expected_ms(self, model: str, output_tokens: int) -> float:
        if model not in self._estimates:
            return 0.0  # never measured: try it first, so that it gets measured
        estimate = self.estimate(model)
        return estimate.ttft_ms + 1000.0 * output_tokens / max(estimate.tokens_per_s, 1e-3)

    def snapshot(self) -> dict[str, tuple[float, float]]:
        return {m: (e.ttft_ms, e.tokens_per_s) for m, e in self._estimates.items()}

    def merge(self, model: str, ttft_ms: float, tokens_per_s: float) -> None:
        """Take in another process's estimate (via Redis) as one observation."""
        self.observe(model, ttft_ms, tokens_per_s)
