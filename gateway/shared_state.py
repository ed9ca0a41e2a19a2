"""Breaker and latency state shared between gateway processes through Redis.

Each process keeps its own breakers and latency estimates (decisions stay local and
cheap), and a background task syncs them every `interval_s`: an opened circuit is
written as `{prefix}:circuit:{model}` = open-until, expiring with the cooldown, so other
processes skip the model at once instead of each rediscovering the outage; latency
estimates are exchanged per process in `{prefix}:latency:{model}`. Without REDIS_URL, or
while Redis is down, everything works in-process and a warning is logged once.

When Redis is reachable again (after an outage or a restart that lost its data), each
process first writes back what it knows before reading anything: its circuits that are
still open (only where Redis holds no later open-until) and the closings it could not
publish meanwhile. Otherwise the first read would find no key and "follow" it, closing
circuits opened during the outage, and the other processes would never learn of them.
A process may so keep a model skipped at most one cooldown longer than needed, which is
the safe direction.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import suppress

import structlog

from gateway.breakers import Breakers, Transition
from gateway.latency import LatencyTracker

log = structlog.get_logger("gateway.shared_state")

LATENCY_FRESH_S = 30.0


class SharedState:
    def __init__(self, redis_url: str | None, breakers: Breakers, latency: LatencyTracker, models: list[str],
                 interval_s: float = 0.25, prefix: str = "twoapi") -> None:
        self.circuit_key = prefix + ":circuit:{}"
        self.latency_key = prefix + ":latency:{}"
        self.redis_url = redis_url
        self.breakers = breakers
        self.latency = latency
        self.models = models
        self.interval_s = interval_s
        self.process_id = f"{os.getpid()}-{id(self):x}"
        self._client = None
        self._task: asyncio.Task[None] | None = None
        self._healthy = True
        self._pending: set[asyncio.Task[None]] = set()
        self._resync = True  # write local circuits back before the next read
        self._unpublished: dict[str, Transition] = {}  # closings Redis did not take

    @property
    def healthy(self) -> bool:
        """False while Redis is unreachable (state is then in-process only)."""
        return self._healthy

    async def start(self) -> None:
        if not self.redis_url:
            return
        import redis.asyncio as redis

        self._client = redis.from_url(self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    def publish_circuit(self, transition: Transition) -> None:
        if self._client is None:
            return
        task = asyncio.get_running_loop().create_task(self._write_circuit(transition))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write_circuit(self, transition: Transition) -> None:
        key = self.circuit_key.format(transition.model)
        try:
            if transition.to == "open" and transition.open_until:
                ttl_ms = max(1, int((transition.open_until - time.time()) * 1000))
                await self._client.set(key, repr(transition.open_until), px=ttl_ms)
            elif transition.to == "closed":
                await self._client.delete(key)
            self._unpublished.pop(transition.model, None)
            self._mark(True)
        except Exception as error:  # Redis down: stay in-process, write it back later
            if transition.to == "closed":
                self._unpublished[transition.model] = transition
            self._mark(False, error)

    async def _run(self) -> None:
        ticks = 0
        while True:
            try:
                if self._resync:
                    await self._push_circuits()
                await self._pull_circuits()
                if ticks % 4 == 0:
                    await self._exchange_latency()
                self._mark(True)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._mark(False, error)
            ticks += 1
            await asyncio.sleep(self.interval_s)

    async def _push_circuits(self) -> None:
        """Write back the closings Redis missed, then this process's open circuits
        (set only where no key is: a later open-until from another process wins)."""
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        closed = [model for model, t in self._unpublished.items() if t.to == "closed"]
        for model in closed:
            pipe.delete(self.circuit_key.format(model))
        for model, open_until in self.breakers.open_circuits().items():
            if open_until > now:
                pipe.set(self.circuit_key.format(model), repr(open_until), px=max(1, int((open_until - now) * 1000)),
                         nx=True)
        await pipe.execute()
        for model in closed:
            self._unpublished.pop(model, None)
        self._resync = False

    async def _pull_circuits(self) -> None:
        values = await self._client.mget([self.circuit_key.format(m) for m in self.models])
        local_open = self.breakers.open_circuits()
        for model, value in zip(self.models, values, strict=True):
            if value is not None:
                self.breakers.adopt(model, float(value))
            elif model in local_open:
                # Closed elsewhere (a probe succeeded) or expired: follow.
                self.breakers.adopt(model, None)

    async def _exchange_latency(self) -> None:
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        for model, (ttft, tps) in self.latency.snapshot().items():
            key = self.latency_key.format(model)
            pipe.hset(key, self.process_id, f"{ttft:.3f},{tps:.3f},{now:.3f}")
            pipe.expire(key, int(LATENCY_FRESH_S * 2))
        for model in self.models:
            pipe.hgetall(self.latency_key.format(model))
        results = await pipe.execute()
        for model, entries in zip(self.models, results[-len(self.models):], strict=True):
            for process, value in (entries or {}).items():
                if process.decode() == self.process_id:
                    continue
                ttft, tps, at = (float(x) for x in value.decode().split(","))
                if now - at <= LATENCY_FRESH_S:
                    self.latency.merge(model, ttft, tps)

    def _mark(self, ok: bool, error: Exception | None = None) -> None:
        if ok and not self._healthy:
            log.warning("redis_recovered", what="shared breaker and latency state resumed")
        elif not ok and self._healthy:
            log.warning("redis_unavailable", error=type(error).__name__,
                        what="breakers and latency estimates continue in-process")
        if not ok:
            self._resync = True
        self._healthy = ok
