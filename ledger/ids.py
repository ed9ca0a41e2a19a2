"""Identifiers: request ids, and ids derived from names and key hashes.

Deriving an aggregate's id from what it is looked up by (a tenant's name, a key's
hash) lets any process find it in the event store directly, with no index to keep.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("5b0e4a8e-2a61-4d0c-9a52-2a7d1e0c2a01")
REQUEST_PREFIX = "req_"


def new_request_id() -> uuid.UUID:
    return uuid.uuid4()


def format_request_id(request_uuid: uuid.UUID) -> str:
    return REQUEST_PREFIX + request_uuid.hex


def parse_request_id(text: str) -> uuid.UUID:
    """The request's aggregate id from `req_<hex>` or a bare UUID. Raises ValueError."""
    return uuid.UUID(text.removeprefix(REQUEST_PREFIX))


def tenant_id(name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "tenant:" + name)


def api_key_id(key_hash: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "api-key:" + key_hash)
