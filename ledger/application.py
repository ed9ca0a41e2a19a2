"""The ledger application: the event store and the operations on its aggregates."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import Transcoder

from ledger import ids
from ledger.events import ENVELOPE_FIELDS, ApiKey, Tenant
from ledger.pricing import quantize
from ledger.store import persistence_env
from ledger.transcoder import OrjsonTranscoder

KEY_PREFIX = "2api_"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    secret: str  # shown once, never stored
    key_id: str
    prefix: str
    tenant: str


def hash_key(secret: str) -> str:
    # Keys carry 256 random bits, so a fast hash is as safe as a slow one here and
    # keeps authentication cheap; nothing of the secret is stored.
    return hashlib.sha256(secret.encode()).hexdigest()


class Ledger(Application[UUID]):
    name = "Ledger"

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    @classmethod
    def open(cls, database_url: str | None, data_dir: Path) -> Ledger:
        return cls(env=persistence_env(database_url, data_dir))

    def is_empty(self) -> bool:
        return not self.recorder.max_notification_id()

    # Tenants

    def create_tenant(self, name: str) -> Tenant:
        if self.find_tenant(name) is not None:
            raise ValueError(f"tenant {name!r} already exists")
        tenant = Tenant(name=name)
        self.save(tenant)
        return tenant

    def find_tenant(self, name: str) -> Tenant | None:
        try:
            return self.repository.get(ids.tenant_id(name))
        except AggregateNotFoundError:
            return None

    def add_credits(self, tenant_name: str, amount: Decimal, reference: str) -> None:
        tenant = self.find_tenant(tenant_name)
        if tenant is None:
            raise ValueError(f"no tenant {tenant_name!r}")
        tenant.add_credits(amount=str(quantize(amount)), reference=reference)
        self.save(tenant)

    # API keys

    def issue_key(self, tenant_name: str, label: str = "", secret: str | None = None) -> IssuedKey:
        if self.find_tenant(tenant_name) is None:
            raise ValueError(f"no tenant {tenant_name!r}")
        secret = secret or KEY_PREFIX + secrets.token_urlsafe(32)
        key_hash = hash_key(secret)
        if self._exists(ids.api_key_id(key_hash)):
            raise ValueError("that key is already issued")
        prefix = secret[: len(KEY_PREFIX) + 6]
        key = ApiKey(tenant=tenant_name, key_hash=key_hash, prefix=prefix, label=label)
        self.save(key)
        return IssuedKey(secret=secret, key_id=key.id.hex, prefix=prefix, tenant=tenant_name)

    def find_key(self, key_hash: str) -> ApiKey | None:
        try:
            return self.repository.get(ids.api_key_id(key_hash))
        except AggregateNotFoundError:
            return None

    def revoke_key(self, key_id: str, reason: str = "") -> None:
        key: ApiKey = self.repository.get(UUID(key_id))
        if not key.revoked:
            key.revoke(reason=reason)
            self.save(key)

    # Reading the record

    def event_dicts(self, aggregate_id: UUID) -> list[dict[str, Any]]:
        """An aggregate's events as plain dicts: event name, version, time, fields."""
        return [_as_dict(event) for event in self.events.get(aggregate_id)]

    def _exists(self, aggregate_id: UUID) -> bool:
        return bool(self.recorder.select_events(aggregate_id, limit=1))


def _as_dict(event: Any) -> dict[str, Any]:
    fields = {k: v for k, v in vars(event).items() if k not in ENVELOPE_FIELDS}
    return {
        "event": type(event).__name__,
        "version": event.originator_version,
        "timestamp": event.timestamp.isoformat(),
        **fields,
    }
