"""The rate limits' buckets in Redis, one script call for many requests.

redis-py spends 150-250 us of CPU per script call here, as much as a third of what
the gateway spends on a request of its own at 32 connections. So calls are shared:

- takes: a request that finds no call in flight sends its own at once (no added
  latency with one request in flight); requests arriving while a call is in flight
  wait for it to return and then go together in the next one, each still
  all-or-nothing over its own buckets, in arrival order;
- settles (actual minus estimated tokens, known after the response) are owed, not
  sent: the next call carries them, applied before its takes, and with no traffic a
  call of their own goes after SETTLE_DELAY_S. A request's settle thus reaches Redis
  before the next take of the same process, as when each was its own call.

A take may also ask for `extra` units of a bucket beyond its cost: a lease
(gateway/rate_leases.py). They are granted only to a request that is admitted, and only
as many as the bucket still has room for, so a lease never pushes a bucket past its
limit nor refuses a request.

GCRA as in gateway/limits.py: a bucket is its theoretical arrival time (TAT), on
Redis's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from gateway.background import Background

PERIOD_MS = 60_000.0
SETTLE_DELAY_S = 0.05  # owed settles with no take to carry them go this late at most

# KEYS: the owed settles' buckets, then each request's buckets in order.
# ARGV: period_ms, the number of settles S, then (limit, delta) per settle, then per
# request its bucket count n and (limit, cost, extra) per bucket.
# Returns, per request: allowed, retry_ms, then (remaining, reset_ms, granted extra)
# per bucket.
_SETTLE_AND_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local tats = {}
local function tat_of(key)
  local tat = tats[key]
  if tat == nil then tat = tonumber(redis.call('GET', key) or '0') end
  if tat < now then return now end
  return tat
end
local function store(key, tat)
  tats[key] = tat
  if tat > now then
    redis.call('SET', key, tostring(tat), 'PX', math.ceil(tat - now) + 1000)
  else
    redis.call('DEL', key)
  end
end
local a = 3
local k = 1
for i = 1, tonumber(ARGV[2]) do
  store(KEYS[k], tat_of(KEYS[k]) + tonumber(ARGV[a + 1]) * period / tonumber(ARGV[a]))
  a = a + 2
  k = k + 1
end
local out = {}
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  a = a + 1
  local allowed = 1
  local retry = 0
  local plans = {}
  for i = 1, n do
    local interval = period / tonumber(ARGV[a])
    local tat = tat_of(KEYS[k])
    local new_tat = tat + tonumber(ARGV[a + 1]) * interval
    if new_tat - period > now then
      allowed = 0
      if new_tat - period - now > retry then retry = new_tat - period - now end
    end
    plans[i] = {KEYS[k], tat, new_tat, interval, tonumber(ARGV[a + 2])}
    a = a + 3
    k = k + 1
  end
  out[#out + 1] = tostring(allowed)
  out[#out + 1] = tostring(retry)
  for i = 1, n do
    local used = plans[i][2]
    local granted = 0
    if allowed == 1 then
      used = plans[i][3]
      local room = math.floor((now + period - used) / plans[i][4] + 1e-9)
      granted = math.max(0, math.min(plans[i][5], room))
      used = used + granted * plans[i][4]
      store(plans[i][1], used)
    end
    out[#out + 1] = tostring((period - (used - now)) / plans[i][4])
    out[#out + 1] = tostring(used - now)
    out[#out + 1] = tostring(granted)
  end
end
return out
"""

Take = Sequence[tuple[str, int, int, int]]  # a request's buckets: (key, limit per minute, cost, extra)
Reply = list[float]  # allowed, retry_ms, then (remaining, reset_ms, granted extra) per bucket


class RedisBuckets:
    """Takes and settles through one shared script call at a time (see the module doc).

    `on_error(error, lost_settles)` hears of a failed call, with the settles it carried,
    so that the caller can apply them elsewhere; a failed take raises to its caller."""

    def __init__(self, url: str, timeout_s: float,
                 on_error: Callable[[Exception, list[tuple[str, int, int]]], None]) -> None:
        import redis.asyncio as redis

        self._client = redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._script = self._client.register_script(_SETTLE_AND_TAKE)
        self._on_error = on_error
        self._in_flight = False
        self._waiting: list[tuple[Take, asyncio.Future[Reply]]] = []
        self._owed: dict[str, list[int]] = {}  # key -> [limit, delta]
        self._flush_timer: asyncio.TimerHandle | None = None
        self._background = Background()
        self.calls = 0  # script calls made (for tests and the bench)

    async def take(self, buckets: Take) -> Reply:
        if self._in_flight:
            future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            self._waiting.append((buckets, future))
            return await future
        return (await self._call([buckets]))[0]

    def settle(self, deltas: Sequence[tuple[str, int, int]]) -> None:
        """Owe (key, limit, delta) to Redis: sent with the next call, or on its own soon."""
        for key, limit, delta in deltas:
            owed = self._owed.get(key)
            if owed is None:
                self._owed[key] = [limit, delta]
            else:
                owed[0], owed[1] = limit, owed[1] + delta
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._flush_owed)

    async def close(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        await self._background.drain()
        if self._owed and not self._in_flight:
            with contextlib.suppress(Exception):
                await self._call([])  # what is owed is not lost on a clean stop
        await self._client.aclose()

    async def _call(self, takes: list[Take]) -> list[Reply]:
        self._in_flight = True
        owed, self._owed = self._owed, {}
        settles = [(key, limit, delta) for key, (limit, delta) in owed.items() if delta]
        keys = [key for key, _, _ in settles]
        args: list[float] = [PERIOD_MS, len(settles)]
        for _, limit, delta in settles:
            args += (limit, delta)
        for buckets in takes:
            args.append(len(buckets))
            for key, limit, cost, extra in buckets:
                keys.append(key)
                args += (limit, cost, extra)
        try:
            self.calls += 1
            reply = await self._script(keys=keys, args=args)
        except Exception as error:
            self._on_error(error, settles)
            raise
        finally:
            self._in_flight = False
            self._send_waiting()
        return _split([float(v) for v in reply], takes)

    def _send_waiting(self) -> None:
        if not self._waiting:
            return
        batch, self._waiting = self._waiting, []
        self._in_flight = True  # arrivals from now on wait for this call's return
        self._background.spawn(self._call_for(batch))

    async def _call_for(self, batch: list[tuple[Take, asyncio.Future[Reply]]]) -> None:
        try:
            replies = await self._call([buckets for buckets, _ in batch])
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():  # its request may have gone (client disconnected)
                future.set_result(reply)

    def _flush_owed(self) -> None:
        self._flush_timer = None
        if not self._owed:
            return
        if self._in_flight:  # the next call carries them; look again later in case there is none
            self._flush_timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._flush_owed)
            return
        self._in_flight = True
        self._background.spawn(self._settle_only())

    async def _settle_only(self) -> None:
        with contextlib.suppress(Exception):  # on_error has the settles
            await self._call([])


def _split(values: list[float], takes: list[Take]) -> list[Reply]:
    replies, at = [], 0
    for buckets in takes:
        end = at + 2 + 3 * len(buckets)
        replies.append(values[at:end])
        at = end
    return replies
