"""The ledger application: the event store and the operations on its aggregates."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import InternalError, Transcoder
from eventsourcing.utils import get_topic

from ledger import ids
from ledger.accounts import MAX_AMOUNT, money_text
from ledger.events import ENVELOPE_FIELDS, ApiKey, PriceBook, ProviderCredential, Tenant
from ledger.store import persistence_env
from ledger.transcoder import OrjsonTranscoder

KEY_PREFIX = "2api_"
MAX_TEXT = 1000  # characters of a label, reference, reason or note
MAX_NAME = 200  # of a tenant name or a price-book version


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
        env = persistence_env(database_url, data_dir)
        for attempt in range(5):
            try:
                return cls(env=env)
            except InternalError as error:
                # Two processes opening a PostgreSQL ledger at once both run the
                # library's DDL (CREATE OR REPLACE FUNCTION ...): one may fail with
                # "tuple concurrently updated". The DDL is idempotent: run it again.
                if "concurrently" not in str(error) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def is_empty(self) -> bool:
        return not self.recorder.max_notification_id()

    # Tenants

    def create_tenant(self, name: str) -> Tenant:
        _check_text("a tenant name", name, MAX_NAME)
        if not name.strip():
            raise ValueError("a tenant name is not empty")
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
        _check_amount(amount)
        _check_text("reference", reference)
        tenant.add_credits(amount=money_text(amount), reference=reference)
        self.save(tenant)

    # API keys

    def issue_key(self, tenant_name: str, label: str = "", secret: str | None = None) -> IssuedKey:
        if self.find_tenant(tenant_name) is None:
            raise ValueError(f"no tenant {tenant_name!r}")
        _check_text("label", label)
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
        key = self.get_key(key_id)
        if key is None:
            raise ValueError(f"no key {key_id[:64]!r}")
        _check_text("reason", reason)
        if not key.revoked:
            key.revoke(reason=reason)
            self.save(key)

    def get_key(self, key_id: str) -> ApiKey | None:
        """A key by its id (the hex of its aggregate id)."""
        try:
            key = self.repository.get(UUID(key_id))
        except (AggregateNotFoundError, ValueError):
            return None
        return key if isinstance(key, ApiKey) else None

    def set_key_limits(self, key_id: str, rpm: int | None, tpm: int | None,
                       allowed_models: list[str] | None) -> ApiKey:
        key = self.get_key(key_id)
        if key is None:
            raise ValueError(f"no key {key_id}")
        _check_limit("rpm", rpm)
        _check_limit("tpm", tpm)
        key.set_limits(rpm=rpm, tpm=tpm, allowed_models=list(allowed_models) if allowed_models is not None else None)
        self.save(key)
        return key

    def set_key_routing(self, key_id: str, defaults: dict[str, Any]) -> ApiKey:
        """Replace the key's routing defaults (fields as in ApiKey.RoutingSet, checked
        by the caller against the catalog; None: inherit the tenant's)."""
        key = self.get_key(key_id)
        if key is None:
            raise ValueError(f"no key {key_id}")
        key.set_routing(**_routing_fields(defaults))
        self.save(key)
        return key

    # Tenant status, limits and balance corrections

    def _tenant(self, name: str) -> Tenant:
        tenant = self.find_tenant(name)
        if tenant is None:
            raise ValueError(f"no tenant {name!r}")
        return tenant

    def suspend_tenant(self, name: str, reason: str = "") -> Tenant:
        tenant = self._tenant(name)
        _check_text("reason", reason)
        if not tenant.suspended:
            tenant.suspend(reason=reason)
            self.save(tenant)
        return tenant

    def reactivate_tenant(self, name: str, reason: str = "") -> Tenant:
        tenant = self._tenant(name)
        _check_text("reason", reason)
        if tenant.suspended:
            tenant.reactivate(reason=reason)
            self.save(tenant)
        return tenant

    def set_tenant_limits(self, name: str, rpm: int | None, tpm: int | None,
                          monthly_cap: Decimal | None) -> Tenant:
        tenant = self._tenant(name)
        _check_limit("rpm", rpm)
        _check_limit("tpm", tpm)
        if monthly_cap is not None:
            _check_amount(monthly_cap)
            if monthly_cap < 0:
                raise ValueError("monthly_cap is a non-negative amount")
        cap = money_text(monthly_cap) if monthly_cap is not None else None
        tenant.set_limits(rpm=rpm, tpm=tpm, monthly_cap=cap)
        self.save(tenant)
        return tenant

    def set_tenant_routing(self, name: str, defaults: dict[str, Any]) -> Tenant:
        """Replace the tenant's routing defaults (fields as in Tenant.RoutingSet, checked
        by the caller against the catalog; None: inherit the gateway's)."""
        tenant = self._tenant(name)
        tenant.set_routing(**_routing_fields(defaults))
        self.save(tenant)
        return tenant

    def adjust_balance(self, name: str, amount: Decimal, reason: str, corrects: str = "") -> None:
        tenant = self._tenant(name)
        _check_amount(amount)
        if amount == 0:
            raise ValueError("an adjustment is a non-zero amount")
        _check_text("reason", reason)
        _check_text("corrects", corrects)
        tenant.adjust_balance(amount=money_text(amount), reason=reason, corrects=corrects)
        self.save(tenant)

    # Price books

    def price_book(self) -> PriceBook | None:
        try:
            return self.repository.get(PriceBook.create_id())
        except AggregateNotFoundError:
            return None

    def publish_price_book(self, prices: dict[str, dict[str, str]], effective_at: str,
                           version: str | None = None, note: str = "") -> str:
        """Publish a validated price table (see ledger/price_books.py); its version."""
        book = self.price_book() or PriceBook()
        version = version or f"v{len(book.versions) + 1}"
        _check_text("version", version, MAX_NAME)
        _check_text("note", note)
        if version in book.versions:
            raise ValueError(f"price book version {version!r} is already published")
        book.publish(version=version, effective_at=effective_at, prices=prices, note=note)
        self.save(book)
        return version

    # Tenants' own provider keys (ciphertext only; see ledger/credentials.py)

    def find_provider_credential(self, tenant: str, provider: str) -> ProviderCredential | None:
        try:
            return self.repository.get(ProviderCredential.create_id(tenant, provider))
        except AggregateNotFoundError:
            return None

    def provider_credential_names(self) -> list[tuple[str, str]]:
        """(tenant, provider) of every provider credential ever stored, in the order
        they were first stored (read from the ledger itself, not a projection)."""
        topic = get_topic(ProviderCredential.Stored)
        names: list[tuple[str, str]] = []
        start = 0
        while True:
            page = self.recorder.select_notifications(start=start, limit=500, topics=[topic],
                                                      inclusive_of_start=False)
            for notification in page:
                event = self.mapper.to_domain_event(notification)
                names.append((event.tenant, event.provider))
            if len(page) < 500:
                return names
            start = page[-1].id

    def set_provider_key(self, tenant: str, provider: str, ciphertext: str) -> None:
        self._tenant(tenant)
        credential = self.find_provider_credential(tenant, provider)
        if credential is None:
            credential = ProviderCredential(tenant=tenant, provider=provider, ciphertext=ciphertext)
        else:
            credential.replace(ciphertext=ciphertext)
        self.save(credential)

    def remove_provider_key(self, tenant: str, provider: str, reason: str = "") -> bool:
        credential = self.find_provider_credential(tenant, provider)
        if credential is None or credential.ciphertext is None:
            return False
        _check_text("reason", reason)
        credential.remove(reason=reason)
        self.save(credential)
        return True

    # Reading the record

    def event_dicts(self, aggregate_id: UUID) -> list[dict[str, Any]]:
        """An aggregate's events as plain dicts: event name, version, time, fields."""
        return [_as_dict(event) for event in self.events.get(aggregate_id)]

    def _exists(self, aggregate_id: UUID) -> bool:
        return bool(self.recorder.select_events(aggregate_id, limit=1))


def _check_text(name: str, value: str, limit: int | None = None) -> None:
    """Free text kept in events and projected into SQL: no NUL (PostgreSQL's text
    cannot hold one, so one event would stop the projection for good) and bounded."""
    limit = limit or MAX_TEXT
    if not isinstance(value, str):
        raise ValueError(f"{name} is text")
    if "\x00" in value:
        raise ValueError(f"{name} may not contain a NUL character")
    if len(value) > limit:
        raise ValueError(f"{name} is at most {limit} characters")


def _check_amount(amount: Decimal) -> None:
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        raise ValueError(f"{amount} is not an amount of money")


MAX_LIMIT = 2_147_483_647  # the projection's INTEGER columns: a larger limit would stop it for good


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT):
        raise ValueError(f"{name} is a whole number from 1 to {MAX_LIMIT}, or null for no limit")


ROUTING_FIELDS = ("strategy", "fallbacks", "max_attempts", "timeout_ms", "max_cost")


def _routing_fields(defaults: dict[str, Any]) -> dict[str, Any]:
    """A RoutingSet event's fields: JSON primitives only, every field present."""
    unknown = set(defaults) - set(ROUTING_FIELDS)
    if unknown:
        raise ValueError(f"unknown routing fields: {', '.join(sorted(unknown))}")
    fields = {name: defaults.get(name) for name in ROUTING_FIELDS}
    if fields["fallbacks"] is not None:
        fields["fallbacks"] = [str(model) for model in fields["fallbacks"]]
    if fields["max_cost"] is not None:
        fields["max_cost"] = str(fields["max_cost"])
    for name in ("max_attempts", "timeout_ms"):
        value = fields[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} is a positive whole number, or null to inherit")
    return fields


def _as_dict(event: Any) -> dict[str, Any]:
    fields = {k: v for k, v in vars(event).items() if k not in ENVELOPE_FIELDS}
    return {
        "event": type(event).__name__,
        "version": event.originator_version,
        "timestamp": event.timestamp.isoformat(),
        **fields,
    }
