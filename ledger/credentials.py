"""Tenants' own provider keys, encrypted with AES-GCM under TWOAPI_MASTER_KEY.

The master key is 32 bytes, given as 64 hex digits or as (url-safe) base64. Each
secret is sealed with a fresh 96-bit nonce, and the tenant and provider are bound
in as associated data, so a ciphertext copied onto another tenant or provider does
not decrypt. Stored form: base64(nonce || ciphertext || tag). Plaintext keys live
only in memory, in the gateway process that uses them; they are never returned by
any endpoint, logged, or written to an event.

Rotation: a cipher holds a key ring, the current master key first and then earlier
ones (TWOAPI_MASTER_KEY_PREVIOUS). It seals only under the current key and opens
under any key of the ring, so gateways keep serving while `rotate_provider_keys`
(`twoapi provider-keys rotate`) re-seals every stored key under the current one,
one `ProviderCredential.Replaced` event each; then the earlier keys can go.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from ledger.application import Ledger

NONCE_BYTES = 12


class MasterKeyError(ValueError):
    """TWOAPI_MASTER_KEY is missing or malformed."""


class CredentialError(ValueError):
    """A stored credential does not decrypt under the master key."""


def parse_master_key(text: str | None) -> bytes:
    if not text or not text.strip():
        raise MasterKeyError("TWOAPI_MASTER_KEY is not set: it is needed to store or use tenants' provider keys")
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        raise MasterKeyError("TWOAPI_MASTER_KEY must be 32 bytes as 64 hex digits or base64") from None
    if len(key) != 32:
        raise MasterKeyError("TWOAPI_MASTER_KEY must be 32 bytes as 64 hex digits or base64")
    return key


def parse_master_keys(text: str | None) -> list[bytes]:
    """A key ring: comma-separated master keys, the current one first (each as for
    `parse_master_key`). The same key given twice counts once."""
    first, *rest = (text or "").split(",")
    parts = [first, *(part for part in rest if part.strip())]  # the first place is the current key's
    ring: list[bytes] = []
    for index, part in enumerate(parts):
        try:
            key = parse_master_key(part)
        except MasterKeyError:
            if index == 0:
                raise
            raise MasterKeyError("TWOAPI_MASTER_KEY_PREVIOUS holds a key that is not 32 bytes as 64 hex digits or "
                                 "base64") from None
        if key not in ring:
            ring.append(key)
    return ring


def master_key_id(key: bytes) -> str:
    """A short name for a master key that reveals nothing of it (for logs and reports,
    so operators can tell which key is in use)."""
    return hashlib.sha256(b"2api master key id\x00" + key).hexdigest()[:12]


def new_master_key() -> str:
    """A fresh master key, as hex (for people setting up a deployment)."""
    return os.urandom(32).hex()


class CredentialCipher:
    """Seals under the first master key of its ring; opens under any of them."""

    def __init__(self, master_keys: bytes | Sequence[bytes]) -> None:
        ring = [master_keys] if isinstance(master_keys, bytes) else list(master_keys)
        if not ring:
            raise MasterKeyError("no master key given")
        self._ring = [AESGCM(key) for key in ring]
        self.key_ids = [master_key_id(key) for key in ring]

    @classmethod
    def from_env(cls, value: str | None) -> CredentialCipher:
        """From TWOAPI_MASTER_KEY's value, or a ring "current,previous,..." (what
        `Settings.master_key` holds when TWOAPI_MASTER_KEY_PREVIOUS is set)."""
        return cls(parse_master_keys(value))

    def seal(self, tenant: str, provider: str, secret: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ring[0].encrypt(nonce, secret.encode(), _context(tenant, provider))
        return base64.b64encode(nonce + sealed).decode()

    def open(self, tenant: str, provider: str, stored: str) -> str:
        return self.open_with_index(tenant, provider, stored)[0]

    def open_with_index(self, tenant: str, provider: str, stored: str) -> tuple[str, int]:
        """The secret, and the position in the ring of the key that opened it (0: the
        current key; more: an earlier one, so the secret is due for re-sealing)."""
        try:
            raw = base64.b64decode(stored, validate=True)
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) > NONCE_BYTES:
            context = _context(tenant, provider)
            for index, aead in enumerate(self._ring):
                try:
                    plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context)
                except InvalidTag:
                    continue
                return plain.decode(), index
        raise CredentialError(f"the {provider} key of tenant {tenant} does not decrypt under any configured master key")


@dataclass
class RotationReport:
    """What `rotate_provider_keys` found: (tenant, provider) pairs by outcome."""

    key_id: str  # the current master key's id (see master_key_id)
    rotated: list[tuple[str, str]] = field(default_factory=list)  # re-sealed (or due, in a dry run)
    current: list[tuple[str, str]] = field(default_factory=list)  # already under the current key
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # no key of the ring opens it: left alone

    @property
    def complete(self) -> bool:
        """Every stored key opens under the current master key alone (after a real run)."""
        return not self.unreadable


def rotate_provider_keys(ledger: Ledger, cipher: CredentialCipher, apply: bool = True,
                         attempts: int = 3) -> RotationReport:
    """Re-seal every stored provider key that opens only under an earlier master key,
    under the current one: one `ProviderCredential.Replaced` each, saved with the
    aggregate's optimistic concurrency check (a key replaced meanwhile, by an admin,
    is read again). Keys already under the current key are left as they are, so a
    second run changes nothing. With `apply=False`, only report."""
    from eventsourcing.persistence import IntegrityError

    report = RotationReport(cipher.key_ids[0])
    for tenant, provider in ledger.provider_credential_names():
        for attempt in range(attempts):
            credential = ledger.find_provider_credential(tenant, provider)
            if credential is None or credential.ciphertext is None:
                break  # removed meanwhile
            try:
                secret, index = cipher.open_with_index(tenant, provider, credential.ciphertext)
            except CredentialError:
                report.unreadable.append((tenant, provider))
                break
            if index == 0:
                report.current.append((tenant, provider))
                break
            if not apply:
                report.rotated.append((tenant, provider))
                break
            credential.replace(ciphertext=cipher.seal(tenant, provider, secret))
            del secret
            try:
                ledger.save(credential)
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
                continue
            report.rotated.append((tenant, provider))
            break
    return report


def _context(tenant: str, provider: str) -> bytes:
    return f"2api provider key\x00{tenant}\x00{provider}".encode()
