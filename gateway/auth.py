"""API key authentication: a hash lookup in the ledger, cached briefly.

A key is valid only if it was issued and not revoked. Answers are cached for at most
`ttl_s` (one second by default), which bounds how long a revoked key keeps working
on any process, and keeps the ledger read off the hot path: a key in use is read again
in the background from half its answer's age, so only a key unused for `ttl_s / 2` or
more makes its request wait for the read (one request a second per busy key did, a
thread hop and an aggregate read in the latency tail). The key's own limits,
allowed models and routing defaults come with it (from the same ApiKey aggregate,
so they take effect within the same second); the tenant's state is
gateway/admission.py's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.background import Background
from gateway.errors import GatewayError
from gateway.routing_options import stored_options
from ledger.application import KEY_PREFIX, Ledger, hash_key

_CACHE_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    key_id: str
    # The key's own limits (ApiKey.LimitsSet); None: none of its own.
    rpm: int | None = None
    tpm: int | None = None
    allowed_models: tuple[str, ...] | None = None
    # The key's routing defaults (ApiKey.RoutingSet) as routing options; None: none.
    routing: dict[str, Any] | None = field(default=None, compare=False, hash=False)


class KeyAuthenticator:
    def __init__(self, ledger: Ledger, ttl_s: float = 1.0) -> None:
        self.ledger = ledger
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        # Background reads in flight, by key hash; `forget` voids one (it may have read
        # the key before the change that made an admin forget it).
        self._refreshing: dict[str, object] = {}
        self._background = Background()

    async def authenticate(self, authorization: str | None) -> Principal:
        secret = _bearer(authorization)
        if not secret.startswith(KEY_PREFIX):
            raise _unauthorized("Incorrect API key provided.")
        key_hash = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[1] > now:
            principal = cached[0]
            if cached[1] - now < self.ttl_s / 2:
                self._refresh_soon(key_hash)
        else:
            try:
                principal = await asyncio.to_thread(self._lookup, key_hash)
            except Exception as error:  # the ledger's store is unreachable
                raise GatewayError(
                    "ledger_unavailable", "API keys cannot be checked right now; retry later."
                ) from error
            self._keep(key_hash, principal, now)
        if principal is None:
            raise _unauthorized("Incorrect API key provided.")
        return principal

    def forget(self, key_hash: str) -> None:
        """Drop a key's cached answer (an admin changed it here): the next request reads it."""
        self._cache.pop(key_hash, None)
        self._refreshing.pop(key_hash, None)

    def _keep(self, key_hash: str, principal: Principal | None, read_at: float) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key_hash] = (principal, read_at + self.ttl_s)

    def _refresh_soon(self, key_hash: str) -> None:
        if key_hash in self._refreshing:
            return  # one read per key at a time
        token = self._refreshing[key_hash] = object()
        self._background.spawn(self._refresh(key_hash, token))

    async def _refresh(self, key_hash: str, token: object) -> None:
        started = time.monotonic()  # the answer is as old as the read's start
        try:
            principal = await asyncio.to_thread(self._lookup, key_hash)
        except Exception:
            return  # the cached answer runs out; the request after it reads (and says so)
        finally:
            if self._refreshing.get(key_hash) is token:
                del self._refreshing[key_hash]
            else:
                token = None  # forgotten meanwhile: this read may predate the change
        if token is not None:
            self._keep(key_hash, principal, started)

    def _lookup(self, key_hash: str) -> Principal | None:
        key = self.ledger.find_key(key_hash)
        if key is None or key.revoked:
            return None
        allowed = getattr(key, "allowed_models", None)
        return Principal(
            tenant=key.tenant,
            key_id=key.id.hex,
            rpm=getattr(key, "rpm", None),
            tpm=getattr(key, "tpm", None),
            allowed_models=tuple(allowed) if allowed is not None else None,
            routing=stored_options(getattr(key, "routing", None)),
        )


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise _unauthorized("Missing API key: send 'Authorization: Bearer 2api_...'.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Malformed Authorization header: expected 'Bearer 2api_...'.")
    return token.strip()


def _unauthorized(message: str) -> GatewayError:
    return GatewayError("authentication_error", message, headers={"www-authenticate": "Bearer"})
