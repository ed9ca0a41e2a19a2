"""The error taxonomy: one table, one envelope.

Every error the gateway answers with has a code in `TAXONOMY`, which fixes its HTTP
status, its OpenAI error `type` and whether the attempt loop may retry it. Responses
use OpenAI's envelope: {"error": {"message", "type", "code", "param"}}.
`docs/errors.md` is the prose version of this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson


class ErrorKind(NamedTuple):
    status: int
    type: str
    retryable: bool
    meaning: str


TAXONOMY: dict[str, ErrorKind] = {
    "invalid_request": ErrorKind(400, "invalid_request_error", False, "The request is malformed or violates the schema; `param` names the field."),
    "invalid_json": ErrorKind(400, "invalid_request_error", False, "The body is not valid JSON (or not UTF-8)."),
    "request_too_large": ErrorKind(413, "invalid_request_error", False, "The body exceeds the configured size limit."),
    "request_timeout": ErrorKind(408, "invalid_request_error", True, "The body did not arrive within the body timeout (60 s); nothing was served."),
    "authentication_error": ErrorKind(401, "authentication_error", False, "Missing, unknown or revoked API key."),
    "permission_denied": ErrorKind(403, "permission_error", False, "The key may not use this resource."),
    "not_found": ErrorKind(404, "invalid_request_error", False, "No such endpoint or resource."),
    "method_not_allowed": ErrorKind(405, "invalid_request_error", False, "The endpoint does not accept this method."),
    "model_not_found": ErrorKind(404, "invalid_request_error", False, "The model is not in the catalog, or its provider is not configured."),
    "model_does_not_support_images": ErrorKind(400, "invalid_request_error", False, "The model cannot take image input."),
    "model_not_supported": ErrorKind(400, "invalid_request_error", False, "The model (or its provider) does not offer this endpoint, e.g. embeddings from an Anthropic model."),
    "context_length_exceeded": ErrorKind(400, "invalid_request_error", False, "The prompt does not fit the model's context window."),
    "rate_limited": ErrorKind(429, "rate_limit_error", False, "A 2api rate limit (per key or tenant) was hit; see retry-after."),
    "insufficient_balance": ErrorKind(402, "insufficient_quota", False, "The tenant's balance or monthly cap is exhausted."),
    "upstream_rate_limited": ErrorKind(429, "rate_limit_error", True, "The provider rate-limited the request."),
    "upstream_overloaded": ErrorKind(503, "api_error", True, "The provider reported it is overloaded (Anthropic 529)."),
    "upstream_error": ErrorKind(502, "api_error", True, "The provider failed (5xx, broken connection, malformed response)."),
    "upstream_auth_error": ErrorKind(502, "api_error", False, "The provider refused the gateway's credentials."),
    "upstream_timeout": ErrorKind(504, "timeout_error", True, "The provider did not answer within the deadline."),
    "provider_unavailable": ErrorKind(503, "api_error", False, "The provider's circuit is open."),
    "all_candidates_failed": ErrorKind(502, "api_error", False, "Every candidate model failed; the message lists each attempt."),
    "content_filtered": ErrorKind(400, "invalid_request_error", False, "The provider's content filter refused the request."),
    "ledger_unavailable": ErrorKind(503, "api_error", False, "The ledger could not record the request, so it was not served."),
    "analytics_unavailable": ErrorKind(503, "api_error", True, "The analytics store is not reachable; chat is unaffected and the projection catches up."),
    "internal_error": ErrorKind(500, "api_error", False, "A bug in the gateway."),
}


@dataclass(slots=True)
class GatewayError(Exception):
    code: str
    message: str
    param: str | None = None
    headers: dict[str, str] | None = None

    @property
    def kind(self) -> ErrorKind:
        return TAXONOMY[self.code]

    @property
    def status(self) -> int:
        return self.kind.status

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.code, self.message, self.param)

    def body(self) -> bytes:
        return orjson.dumps(self.envelope())


def error_envelope(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TAXONOMY[code].type, "code": code, "param": param}}


def is_retryable(code: str) -> bool:
    kind = TAXONOMY.get(code)
    return bool(kind and kind.retryable)


def too_large(limit: int) -> GatewayError:
    return GatewayError("request_too_large", f"The request body exceeds the limit of {limit} bytes.")
