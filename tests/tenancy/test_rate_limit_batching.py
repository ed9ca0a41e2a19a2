"""Rate-limit calls to Redis are shared (gateway/redis_buckets.py): requests arriving
while a call is in flight go together in the next one, each all-or-nothing over its own
buckets, and token settles ride on the next call or go alone soon after; none is lost
when Redis fails or the gateway stops. Against the real Redis."""

from __future__ import annotations

import asyncio

from gateway.limits import Bucket, RateLimiter
from tests.support import free_port
from tests.tenancy.conftest import REDIS_URL


def limiter(prefix: str) -> RateLimiter:
    return RateLimiter(REDIS_URL, prefix=prefix)


def requests(name: str, limit: int) -> Bucket:
    return Bucket(f"key:{name}:requests", "requests", limit, 1)


def tokens(name: str, limit: int, cost: int) -> Bucket:
    return Bucket(f"key:{name}:tokens", "tokens", limit, cost)


def remaining(decision) -> list[int]:
    return [state.remaining for state in decision.states]


async def started(*limiters: RateLimiter) -> None:
    for each in limiters:
        await each.start()


def test_requests_arriving_together_share_calls_and_the_limit_holds_exactly(redis_prefix):
    async def scenario():
        rl = limiter(redis_prefix)
        await started(rl)
        try:
            decisions = await asyncio.gather(*(rl.take([requests("a", 20)]) for _ in range(60)))
            return decisions, rl.redis.calls
        finally:
            await rl.stop()

    decisions, calls = asyncio.run(scenario())
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 20 and all(d.source == "redis" for d in decisions)
    assert sorted(remaining(d)[0] for d in allowed) == list(range(20))  # each saw the one before it
    assert all(d.retry_after_s > 0 for d in decisions if not d.allowed)
    assert calls <= 3  # the first alone, the other 59 together (60 calls before)


def test_a_refused_request_takes_nothing_from_the_buckets_it_shares_a_call_with(redis_prefix):
    async def scenario():
        rl = limiter(redis_prefix)
        await started(rl)
        try:
            assert (await rl.take([requests("tight", 1)])).allowed
            leader = rl.take([requests("other", 100)])  # in flight while the next three wait
            both = rl.take([requests("tight", 1), requests("shared", 2)])
            first = rl.take([requests("shared", 2)])
            second = rl.take([requests("shared", 2)])
            results = await asyncio.gather(leader, both, first, second)
            return results, rl.redis.calls
        finally:
            await rl.stop()

    (leader, both, first, second), calls = asyncio.run(scenario())
    assert calls == 3
    assert leader.allowed and not both.allowed
    assert first.allowed and second.allowed  # "shared" had room for both: the refused one took nothing
    assert remaining(second) == [0]


def test_a_settle_reaches_redis_with_the_next_take(redis_prefix):
    async def scenario():
        rl = limiter(redis_prefix)
        await started(rl)
        try:
            first = await rl.take([tokens("t", 1000, 100)])
            rl.settle([(tokens("t", 1000, 100), -60)])  # the request used 40 tokens, not 100
            second = await rl.take([tokens("t", 1000, 100)])
            return first, second, rl.redis.calls
        finally:
            await rl.stop()

    first, second, calls = asyncio.run(scenario())
    assert remaining(first) == [900]
    assert 860 <= remaining(second)[0] <= 862  # 1000 - 40 - 100 (and what refilled meanwhile: 1000/min)
    assert calls == 2  # the settle had no call of its own


def test_an_owed_settle_goes_on_its_own_when_no_take_comes(redis_prefix):
    async def scenario():
        rl, other = limiter(redis_prefix), None
        await started(rl)
        try:
            await rl.take([tokens("t", 1000, 100)])
            rl.settle([(tokens("t", 1000, 100), 200)])  # it used 300
            await asyncio.sleep(0.3)
            other = limiter(redis_prefix)  # another gateway process
            await started(other)
            seen = await other.take([tokens("t", 1000, 0)])
            return seen, rl.redis.calls
        finally:
            await rl.stop()
            if other is not None:
                await other.stop()

    seen, calls = asyncio.run(scenario())
    assert 700 <= remaining(seen)[0] <= 712  # 1000 - 300, and ~0.4 s of refill at 1000/min
    assert calls == 2


def test_what_is_owed_is_sent_when_the_gateway_stops(redis_prefix):
    async def scenario():
        rl = limiter(redis_prefix)
        await started(rl)
        await rl.take([tokens("t", 1000, 10)])
        rl.settle([(tokens("t", 1000, 10), 90)])
        await rl.stop()  # before the settle's own call was due
        other = limiter(redis_prefix)
        await started(other)
        try:
            return await other.take([tokens("t", 1000, 0)])
        finally:
            await other.stop()

    assert 900 <= remaining(asyncio.run(scenario()))[0] <= 905  # 1000 - 100, and refill


def test_settles_a_failed_call_carried_are_kept_in_process():
    async def scenario():
        rl = RateLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.1)  # nobody listening
        await started(rl)
        try:
            rl.settle([(tokens("t", 1000, 0), 300)])  # owed to Redis, whose call then fails
            await asyncio.sleep(0.4)
            healthy = rl.healthy
            after = await rl.take([tokens("t", 1000, 100)])  # in-process now
            return healthy, after
        finally:
            await rl.stop()

    healthy, after = asyncio.run(scenario())
    assert healthy is False
    assert after.source == "local" and 600 <= remaining(after)[0] <= 610  # 1000 - 300 - 100, and refill
