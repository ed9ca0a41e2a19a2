"""Rate limits: requests and tokens per minute, per key and per tenant (GCRA).

Each limit is a GCRA bucket ("generic cell rate algorithm", a leaky bucket kept as
one number, its theoretical arrival time TAT): a limit of N per minute admits one
unit every 60/N s with a burst of up to N, and a bucket that is full again has
"reset". A request takes 1 from its request buckets and its estimated prompt
tokens from its token buckets, all-or-nothing: if any bucket would overflow,
nothing is taken and the answer is 429 `rate_limited` with `retry-after`. When the
usage is known, the token buckets are settled with the difference between the
actual tokens (input + output) and the estimate.

With `REDIS_URL` the buckets live in Redis and one Lua script checks and takes them
atomically (using Redis's clock), so the limits hold across any number of gateway
processes; requests arriving together share a script call, and settles ride on the
next one (gateway/redis_buckets.py). With a lease share (TWOAPI_RATE_LEASE_SHARE), a
process takes a few units of a large bucket ahead of use and its requests spend them
with no call at all (gateway/rate_leases.py). Without Redis, or while Redis is unreachable,
they are kept in-process (per process), and a warning is logged; a Redis failure
never fails a request.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import structlog

from gateway.background import Background
from gateway.rate_leases import LEASE_IDLE_S, Leases
from gateway.redis_buckets import PERIOD_MS, RedisBuckets

log = structlog.get_logger("gateway.limits")

REDIS_RETRY_S = 1.0  # after a Redis failure, use in-process buckets this long before trying again


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str  # e.g. "key:<id>:requests"
    kind: str  # "requests" | "tokens"
    limit: int  # per minute
    cost: int  # taken now


@dataclass(frozen=True, slots=True)
class BucketState:
    bucket: Bucket
    remaining: int
    reset_ms: float


@dataclass(slots=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    states: list[BucketState] = field(default_factory=list)
    source: str = "none"  # "redis" | "lease" | "local" | "none"

    def headers(self) -> dict[str, str]:
        """OpenAI's rate-limit headers, for the tightest bucket of each kind."""
        headers: dict[str, str] = {}
        for kind in ("requests", "tokens"):
            states = [s for s in self.states if s.bucket.kind == kind]
            if not states:
                continue
            tightest = min(states, key=lambda s: (s.remaining, -s.reset_ms))
            headers[f"x-ratelimit-limit-{kind}"] = str(tightest.bucket.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(tightest.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = format_duration(tightest.reset_ms / 1000)
        if not self.allowed:
            headers["retry-after"] = str(max(1, math.ceil(self.retry_after_s)))
            headers["retry-after-ms"] = str(max(1, math.ceil(self.retry_after_s * 1000)))
        return headers


def format_duration(seconds: float) -> str:
    """Durations as OpenAI writes them in x-ratelimit-reset-*: 20ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{round(rest):d}s"


class LocalBuckets:
    """The same GCRA in-process (per process), on this process's clock."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._sweep_at = 0.0

    def take(self, buckets: list[Bucket], now_ms: float | None = None) -> Decision:
        now = time.time() * 1000 if now_ms is None else now_ms
        self._sweep(now)
        allowed, retry = True, 0.0
        plans = []
        for b in buckets:
            interval = PERIOD_MS / b.limit
            tat = max(self._tats.get(b.name, 0.0), now)
            new_tat = tat + b.cost * interval
            allow_at = new_tat - PERIOD_MS
            if allow_at > now:
                allowed = False
                retry = max(retry, allow_at - now)
            plans.append((b, tat, new_tat, interval))
        states = []
        for b, tat, new_tat, interval in plans:
            used = new_tat if allowed else tat
            if allowed:
                self._tats[b.name] = used
            states.append(BucketState(b, _remaining(PERIOD_MS, used - now, interval), used - now))
        return Decision(allowed, retry / 1000, states, "local")

    def settle(self, buckets: list[tuple[Bucket, int]], now_ms: float | None = None) -> None:
        now = time.time() * 1000 if now_ms is None else now_ms
        for b, delta in buckets:
            tat = max(self._tats.get(b.name, 0.0), now) + delta * PERIOD_MS / b.limit
            if tat > now:
                self._tats[b.name] = tat
            else:
                self._tats.pop(b.name, None)

    def _sweep(self, now: float) -> None:
        if now < self._sweep_at:
            return
        self._sweep_at = now + PERIOD_MS
        for name in [n for n, tat in self._tats.items() if tat < now]:
            del self._tats[name]


class RateLimiter:
    def __init__(self, redis_url: str | None, prefix: str = "twoapi", timeout_s: float = 0.25,
                 lease_share: float = 0.0) -> None:
        self.redis_url = redis_url
        self.prefix = prefix + ":rl:"
        self.timeout_s = timeout_s
        self.local = LocalBuckets()
        self.redis: RedisBuckets | None = None
        self.leases = Leases(lease_share)
        self._sweep: asyncio.TimerHandle | None = None
        self._background = Background()
        self._down_until = 0.0
        self._healthy = True

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        if self.redis_url:
            self.redis = RedisBuckets(self.redis_url, self.timeout_s, self._settles_lost)

    async def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        await self._background.drain()
        if self.redis is not None:
            self._give_back(self.leases.clear())  # sent by close(), with whatever else is owed
            await self.redis.close()

    def _use_redis(self) -> bool:
        return self.redis is not None and time.monotonic() >= self._down_until

    async def take(self, buckets: list[Bucket]) -> Decision:
        if not buckets:
            return Decision(True)
        capped = [Bucket(b.name, b.kind, b.limit, min(b.cost, b.limit)) for b in buckets]
        if self._use_redis():
            now = time.monotonic() * 1000
            spent = self.leases.spend(capped, now) if self.leases else None
            if spent is not None:
                self._top_up(capped, now)
                return Decision(True, 0.0, _states(capped, spent), "lease")
            asked = [(b, self.leases.ask(b, now)) for b in capped]
            try:
                values = await self._call(asked)
            except Exception as error:
                self._failed(error)
            else:
                states = self._answered(asked, values)
                if values[0] != 1 and (spent := self.leases.spend(capped, time.monotonic() * 1000)) is not None:
                    # Refused while a top-up filled the leases: this process holds the units.
                    return Decision(True, 0.0, _states(capped, spent), "lease")
                return Decision(values[0] == 1, values[1] / 1000, states, "redis")
        return self.local.take(capped)

    def settle(self, buckets: list[tuple[Bucket, int]]) -> None:
        """Adjust token buckets by (actual - estimated) tokens, off the response path:
        against their leases first, the rest in Redis."""
        buckets = [(b, d) for b, d in buckets if d]
        if not buckets:
            return
        if not self._use_redis():
            self.local.settle(buckets)
            return
        assert self.redis is not None
        owed = [(self.prefix + b.name, b.limit, d) for b, delta in buckets if (d := self.leases.absorb(b, delta))]
        if owed:
            self.redis.settle(owed)

    async def _call(self, asked: list[tuple[Bucket, int]]) -> list[float]:
        assert self.redis is not None
        try:
            values = await self.redis.take([(self.prefix + b.name, b.limit, b.cost, extra) for b, extra in asked])
        except Exception:
            self.leases.unanswered(asked)
            raise
        self._recovered()
        return values

    def _answered(self, asked: list[tuple[Bucket, int]], values: list[float]) -> list[BucketState]:
        now = time.monotonic() * 1000
        states = [self.leases.answered(b, extra, (values[2 + 3 * i], values[3 + 3 * i], values[4 + 3 * i]), now)
                  for i, (b, extra) in enumerate(asked)]
        if self.leases and self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(LEASE_IDLE_S, self._give_back_idle)
        return _states([b for b, _ in asked], states)

    def _top_up(self, buckets: list[Bucket], now: float) -> None:
        """Ask for more units of the half-spent leases, in the background."""
        low = self.leases.low(buckets, now)
        if low:
            self._background.spawn(self._top_up_call([(Bucket(b.name, b.kind, b.limit, 0), extra) for b, extra in low]))

    async def _top_up_call(self, asked: list[tuple[Bucket, int]]) -> None:
        try:
            values = await self._call(asked)
        except Exception as error:
            self._failed(error)
        else:
            self._answered(asked, values)

    def _give_back_idle(self) -> None:
        self._sweep = None
        self._give_back(self.leases.idle(time.monotonic() * 1000))
        if self.leases:
            self._sweep = asyncio.get_running_loop().call_later(LEASE_IDLE_S, self._give_back_idle)

    def _give_back(self, held: list[tuple[str, int, int]]) -> None:
        if held and self.redis is not None:
            self.redis.settle([(self.prefix + name, limit, -units) for name, limit, units in held])

    def _settles_lost(self, error: Exception, settles: list[tuple[str, int, int]]) -> None:
        self._failed(error)
        self.local.settle([(Bucket(key.removeprefix(self.prefix), "tokens", limit, 0), delta)
                           for key, limit, delta in settles])

    def _failed(self, error: Exception) -> None:
        self._down_until = time.monotonic() + REDIS_RETRY_S
        self.leases.clear()  # their units stay taken in Redis, and refill there
        if self._healthy:
            self._healthy = False
            log.warning("redis_unavailable", error=type(error).__name__,
                        what="rate limits continue in-process (per process) until Redis is back")

    def _recovered(self) -> None:
        if not self._healthy:
            self._healthy = True
            log.warning("redis_recovered", what="rate limits are shared through Redis again")


def _states(buckets: list[Bucket], states: list[tuple[int, float]]) -> list[BucketState]:
    return [BucketState(b, remaining, reset_ms) for b, (remaining, reset_ms) in zip(buckets, states, strict=True)]


def _remaining(period: float, used: float, interval: float) -> int:
    return max(0, math.floor((period - used) / interval + 1e-9))
