"""Leases of rate-limit units: a process takes a few units of a bucket from Redis ahead
of use, and its requests spend them without a call.

With the buckets in Redis, every request paid a script call before its upstream call:
~90-110 us of redis-py CPU here and a round trip, 8% of the serving process's Python
CPU at one request in flight (bench/README.md). With a lease, a request whose buckets
all hold enough units spends them locally; a lease half spent is topped up by a call
in the background, and one unused for LEASE_IDLE_S is given back.

The limit stays strict across processes: every unit a request spends was taken from
Redis's bucket first (gateway/redis_buckets.py grants a lease only as many units as
the bucket has room for). The price is units one process holds that another cannot
use: per process at most `share` of each limit and LEASE_REQUESTS requests' worth, for
at most LEASE_IDLE_S after its last use. A bucket too small to lease two requests'
worth is never leased, so small limits stay exact to the unit.

The `x-ratelimit-*` state of a request served from a lease is Redis's at the lease's
last call, refilled since on this process's clock, plus the units the lease holds:
exact with one process, an estimate with several.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.redis_buckets import PERIOD_MS

if TYPE_CHECKING:  # gateway/limits.py holds the leases
    from gateway.limits import Bucket

State = tuple[int, float]  # a bucket's remaining units and its reset in ms, as a request sees them

LEASE_REQUESTS = 64  # a lease's size in requests' worth: ~0.1 s of one process at full speed
LEASE_IDLE_S = 1.0  # a lease unused this long is given back


@dataclass(slots=True)
class Lease:
    limit: int  # the bucket's, per minute
    units: int = 0  # taken from Redis, not yet spent
    target: int = 0  # what a top-up brings it back to
    remaining: float = 0.0  # Redis's remaining at the last call (the units held excluded)
    reset_ms: float = 0.0  # ... and its time until the bucket is full again
    seen_at: float = 0.0  # when that call returned (this process's monotonic clock, ms)
    used_at: float = 0.0  # when a request last spent from it
    asking: bool = False  # a call asking for more is in flight

    def state(self, now: float) -> State:
        interval = PERIOD_MS / self.limit
        elapsed = max(0.0, now - self.seen_at)
        refilled = min(self.limit - self.units, self.remaining + elapsed / interval)
        reset = max(0.0, self.reset_ms - elapsed - self.units * interval)
        return max(0, math.floor(refilled + 1e-9)) + self.units, reset


class Leases:
    """This process's leases, by bucket name. Not thread-safe: the event loop's own."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._held: dict[str, Lease] = {}

    def size(self, bucket: Bucket) -> int:
        """The units to hold for this bucket; 0 when it is too small to lease."""
        if bucket.cost <= 0:
            return 0
        size = min(int(bucket.limit * self.share), LEASE_REQUESTS * bucket.cost)
        return size if size >= 2 * bucket.cost else 0

    def spend(self, buckets: list[Bucket], now: float) -> list[State] | None:
        """Spend each bucket's cost from its lease, all or nothing: the request's states,
        or None when some bucket's lease is short (the request then goes to Redis)."""
        leases = []
        for bucket in buckets:
            lease = self._lease(bucket)
            if lease is None or lease.units < bucket.cost:
                return None
            leases.append(lease)
        states = []
        for bucket, lease in zip(buckets, leases, strict=True):
            lease.units -= bucket.cost
            lease.used_at = now
            states.append(lease.state(now))
        return states

    def ask(self, bucket: Bucket, now: float) -> int:
        """Extra units to ask Redis for beside a call's cost (0: none), noting that a
        call is asking so that requests arriving meanwhile do not ask again."""
        size = self.size(bucket)
        if not size:
            return 0
        lease = self._lease(bucket)
        if lease is None:
            lease = self._held[bucket.name] = Lease(bucket.limit, used_at=now)
        if lease.asking or lease.units * 2 >= size:
            return 0
        lease.asking = True
        lease.target = size
        return size - lease.units

    def low(self, buckets: list[Bucket], now: float) -> list[tuple[Bucket, int]]:
        """The buckets whose leases are half spent, with the units that top them up."""
        wanted = []
        for bucket in buckets:
            extra = self.ask(bucket, now)
            if extra:
                wanted.append((bucket, extra))
        return wanted

    def answered(self, bucket: Bucket, asked: int, reply: tuple[float, float, float], now: float) -> State:
        """Redis answered a call for this bucket that asked for `asked` extra units:
        note the bucket's state, keep what was granted; the state the request sees (the
        units held count as remaining)."""
        remaining, reset_ms, granted = reply
        lease = self._lease(bucket)
        if lease is None:
            return max(0, math.floor(remaining + 1e-9)), max(0.0, reset_ms)
        if asked:
            lease.asking = False
        lease.units += int(granted)
        lease.remaining, lease.reset_ms, lease.seen_at = remaining, reset_ms, now
        return lease.state(now)

    def unanswered(self, asked: list[tuple[Bucket, int]]) -> None:
        """A call that asked for these buckets' extra units failed."""
        for bucket, extra in asked:
            lease = self._held.get(bucket.name)
            if lease is not None and extra:
                lease.asking = False

    def absorb(self, bucket: Bucket, delta: int) -> int:
        """Settle a request's (actual - estimated) units against the bucket's lease as far
        as it goes (tokens given back, or more spent); what is left for Redis."""
        lease = self._lease(bucket)
        if lease is None or lease.target == 0:
            return delta
        if delta < 0:
            kept = min(-delta, max(0, 2 * lease.target - lease.units))  # a lease never grows past twice its size
            lease.units += kept
            return delta + kept
        spent = min(delta, lease.units)
        lease.units -= spent
        return delta - spent

    def _lease(self, bucket: Bucket) -> Lease | None:
        """The bucket's lease, if it was taken under the bucket's limit. One taken under
        an earlier limit (an operator changed it) is dropped, its units left spent in
        Redis: given back at the new limit they would count for more or less than they
        did, and spent they would admit requests the new limit may not."""
        lease = self._held.get(bucket.name)
        if lease is not None and lease.limit != bucket.limit:
            del self._held[bucket.name]
            return None
        return lease

    def idle(self, now: float) -> list[tuple[str, int, int]]:
        """Drop the leases unused for LEASE_IDLE_S: (name, limit, units) to give back."""
        returned = []
        for name, lease in list(self._held.items()):
            if lease.asking or now - lease.used_at < LEASE_IDLE_S * 1000:
                continue
            del self._held[name]
            if lease.units:
                returned.append((name, lease.limit, lease.units))
        return returned

    def clear(self) -> list[tuple[str, int, int]]:
        """Drop every lease: (name, limit, units) of those that held units."""
        held = [(name, lease.limit, lease.units) for name, lease in self._held.items() if lease.units]
        self._held.clear()
        return held

    def __bool__(self) -> bool:
        return bool(self._held)
