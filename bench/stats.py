"""Small statistics helpers: percentiles of samples, medians of runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    frac = rank - low
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * frac)


def summary_ms(values_s: Iterable[float]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean in milliseconds of durations given in seconds."""
    ordered = sorted(values_s)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        value = percentile(ordered, q)
        out[name] = None if value is None else round(value * 1000, 3)
    out["max"] = round(ordered[-1] * 1000, 3) if ordered else None
    out["mean"] = round(statistics.fmean(ordered) * 1000, 3) if ordered else None
    return out


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return float(statistics.median(present))


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


def diff(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if a is None or b is None:
        return None
    return round(a - b, digits)
