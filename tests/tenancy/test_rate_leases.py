"""Leases of rate-limit units (gateway/rate_leases.py): a process takes a few units of a
large bucket from Redis ahead of use and its requests spend them with no call; the
limit still holds across processes, idle and stopped processes give their units back,
token settles are kept against the lease, and small limits are never leased. Against
the real Redis."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

from gateway.limits import Bucket, RateLimiter
from gateway.rate_leases import LEASE_IDLE_S, LEASE_REQUESTS
from tests.tenancy.conftest import REDIS_URL, Admin, chat


def requests(name: str, limit: int) -> Bucket:
    return Bucket(f"key:{name}:requests", "requests", limit, 1)


def tokens(name: str, limit: int, cost: int) -> Bucket:
    return Bucket(f"key:{name}:tokens", "tokens", limit, cost)


def remaining(decision) -> int:
    return decision.states[0].remaining


async def running(prefix: str, share: float) -> RateLimiter:
    limiter = RateLimiter(REDIS_URL, prefix=prefix, lease_share=share)
    await limiter.start()
    return limiter


def test_requests_spend_a_lease_without_calling_redis_and_count_down_exactly(redis_prefix):
    async def scenario():
        rl = await running(redis_prefix, 0.1)  # limit 640: a lease of 64, refilling ~11 a second
        try:
            decisions = [await rl.take([requests("a", 640)]) for _ in range(20)]
            return decisions, rl.redis.calls
        finally:
            await rl.stop()

    decisions, calls = asyncio.run(scenario())
    assert [d.source for d in decisions] == ["redis"] + ["lease"] * 19
    assert calls == 1
    seen = [remaining(d) for d in decisions]
    assert seen[0] == 639
    assert all(before - now in (0, 1) for before, now in itertools.pairwise(seen)), seen  # 1 each, or refilled
    assert all(d.allowed for d in decisions)


def test_a_half_spent_lease_is_topped_up_in_the_background(redis_prefix):
    async def scenario():
        rl = await running(redis_prefix, 0.1)
        try:
            decisions = []
            for _ in range(3 * LEASE_REQUESTS):
                decisions.append(await rl.take([requests("b", 6400)]))
                await asyncio.sleep(0.001)  # the event loop turns between requests, as in the gateway
            return decisions, rl.redis.calls
        finally:
            await rl.stop()

    decisions, calls = asyncio.run(scenario())
    assert all(d.allowed for d in decisions)
    assert decisions[0].source == "redis" and all(d.source == "lease" for d in decisions[1:])  # no request waited
    assert 3 <= calls <= 6  # the first take, then a top-up every ~32 requests' worth


def test_the_limit_holds_across_processes_holding_leases(redis_prefix):
    async def scenario():
        first, second = await running(redis_prefix, 0.1), await running(redis_prefix, 0.1)
        try:
            started = time.monotonic()
            decisions = []
            for _ in range(700):  # the two "processes" in turn, each holding up to 64 units
                for rl in (first, second):
                    decisions.append(await rl.take([requests("shared", 1000)]))
            return decisions, time.monotonic() - started
        finally:
            await first.stop()
            await second.stop()

    decisions, elapsed = asyncio.run(scenario())
    allowed = sum(d.allowed for d in decisions)
    refilled = math.ceil(elapsed * 1000 / 60)
    assert allowed <= 1000 + refilled  # never more than the limit: every unit came from Redis
    assert allowed >= 1000 - 2 * 64  # at most a lease each stranded
    refused = [d for d in decisions if not d.allowed]
    assert refused and all(d.retry_after_s > 0 and remaining(d) == 0 for d in refused)


def test_an_idle_lease_and_a_stopped_process_give_their_units_back(redis_prefix):
    async def scenario():
        holder, observer = await running(redis_prefix, 0.1), await running(redis_prefix, 0.0)
        try:
            await holder.take([requests("idle", 640)])  # and 64 more held
            held = await observer.take([requests("idle", 640)])
            await asyncio.sleep(2 * LEASE_IDLE_S + 0.3)
            after_idle = await observer.take([requests("idle", 640)])
            await holder.take([requests("stopped", 640)])
            await holder.stop()
            after_stop = await observer.take([requests("stopped", 640)])
            return held, after_idle, after_stop
        finally:
            await observer.stop()

    held, after_idle, after_stop = asyncio.run(scenario())
    assert remaining(held) == 640 - 1 - 64 - 1
    assert remaining(after_idle) >= 640 - 3  # the 64 came back (and ~25 refilled)
    assert remaining(after_stop) == 640 - 2


def test_token_settles_are_kept_against_the_lease(redis_prefix):
    async def scenario():
        rl = await running(redis_prefix, 0.01)  # 1M tokens a minute: a lease of 6,400 for requests of 100
        try:
            first = await rl.take([tokens("t", 1_000_000, 100)])
            calls = rl.redis.calls
            rl.settle([(tokens("t", 1_000_000, 100), -60)])  # used 40, not 100
            rl.settle([(tokens("t", 1_000_000, 100), 0)])
            started = time.monotonic()
            second = await rl.take([tokens("t", 1_000_000, 100)])
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.1)  # a settle owed to Redis would go now
            return first, second, calls, rl.redis.calls, elapsed
        finally:
            await rl.stop()

    first, second, calls_before, calls_after, elapsed = asyncio.run(scenario())
    assert remaining(first) == 1_000_000 - 100
    assert second.source == "lease" and calls_after == calls_before  # no call for the settle nor the take
    assert 1_000_000 - 40 - 100 <= remaining(second) <= 1_000_000 - 40 - 100 + 20 + elapsed * 16_667


def test_a_lease_taken_under_an_earlier_limit_is_not_spent(redis_prefix):
    async def scenario():
        rl = await running(redis_prefix, 0.1)
        try:
            await rl.take([requests("changed", 640)])  # and a lease of 64 at 640 a minute
            lowered = await rl.take([requests("changed", 10)])  # the operator lowered it to 10
            again = await rl.take([requests("changed", 10)])
            return lowered, again
        finally:
            await rl.stop()

    lowered, again = asyncio.run(scenario())
    assert lowered.source == "redis" and again.source == "redis"  # 10 a minute is too small to lease
    assert remaining(lowered) <= 8 and remaining(again) == remaining(lowered) - 1  # the 65 units still count


def test_small_limits_are_never_leased(redis_prefix):
    async def scenario():
        rl = await running(redis_prefix, 0.01)  # 100 a minute: a lease of 1, under two requests' worth
        try:
            decisions = [await rl.take([requests("small", 100)]) for _ in range(5)]
            return decisions, rl.redis.calls
        finally:
            await rl.stop()

    decisions, calls = asyncio.run(scenario())
    assert calls == 5 and {d.source for d in decisions} == {"redis"}
    assert [remaining(d) for d in decisions] == [99, 98, 97, 96, 95]


def test_gateways_with_leases_keep_a_tenant_to_its_limit(make_gateway):
    first = make_gateway(redis_url=REDIS_URL, rate_lease_share=0.1)
    second = make_gateway(redis_url=REDIS_URL, rate_lease_share=0.1)
    admin = Admin(first.url)
    tenant = admin.tenant("acme")
    admin.limits("acme", rpm=100)  # a lease of 10 per gateway
    started = time.monotonic()
    responses = [chat(gateway, tenant.key) for _ in range(65) for gateway in (first, second)]
    refilled = math.ceil((time.monotonic() - started) * 100 / 60)
    statuses = [r.status_code for r in responses]
    assert 100 - 2 * 10 <= statuses.count(200) <= 100 + refilled, statuses
    assert set(statuses) == {200, 429}
    ok = [r for r in responses if r.status_code == 200]
    assert all(int(r.headers["x-ratelimit-remaining-requests"]) < 100 for r in ok)
    assert ok[0].headers["x-ratelimit-limit-requests"] == "100"
