"""Tenants' own provider keys, encrypted with AES-GCM under TWOAPI_MASTER_KEY.

The master key is 32 bytes, given as 64 hex digits or as (url-safe) base64. Each
secret is sealed with a fresh 96-bit nonce, and the tenant and provider are bound
in as associated data, so a ciphertext copied onto another tenant or provider does
not decrypt. Stored form: base64(nonce || ciphertext || tag). Plaintext keys live
only in memory, in the gateway process that uses them; they are never returned by
any endpoint, logged, or written to an event.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class MasterKeyError(ValueError):
    """TWOAPI_MASTER_KEY is missing or malformed."""


class CredentialError(ValueError):
    """A stored credential does not decrypt under the master key."""


def parse_master_key(text: str | None) -> bytes:
    if not text:
        raise MasterKeyError("TWOAPI_MASTER_KEY is not set: it is needed to store or use tenants' provider keys")
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        raise MasterKeyError("TWOAPI_MASTER_KEY must be 32 bytes as 64 hex digits or base64") from None
    if len(key) != 32:
        raise MasterKeyError("TWOAPI_MASTER_KEY must be 32 bytes as 64 hex digits or base64")
    return key


def new_master_key() -> str:
    """A fresh master key, as hex (for people setting up a deployment)."""
    return os.urandom(32).hex()


class CredentialCipher:
    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(master_key)

    @classmethod
    def from_env(cls, value: str | None) -> CredentialCipher:
        return cls(parse_master_key(value))

    def seal(self, tenant: str, provider: str, secret: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), _context(tenant, provider))
        return base64.b64encode(nonce + sealed).decode()

    def open(self, tenant: str, provider: str, stored: str) -> str:
        try:
            raw = base64.b64decode(stored)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _context(tenant, provider))
        except (InvalidTag, ValueError, binascii.Error):
            raise CredentialError(f"the {provider} key of tenant {tenant} does not decrypt under this master key") \
                from None
        return plain.decode()


def _context(tenant: str, provider: str) -> bytes:
    return f"2api provider key\x00{tenant}\x00{provider}".encode()
