"""Typed exceptions mirroring the gateway's error taxonomy (docs/errors.md).

Every error the gateway answers with has a `code`; `TAXONOMY` gives its HTTP status,
OpenAI error type and whether it is retryable, and `ERROR_CLASSES` the exception
raised for it. Exceptions are grouped by status like the OpenAI SDK's
(`BadRequestError`, `AuthenticationError`, `NotFoundError`, `RateLimitError`, ...),
with one subclass per code, so callers can catch broadly or precisely.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ErrorKind(NamedTuple):
    status: int
    type: str
    retryable: bool


# code -> (HTTP status, OpenAI error type, retryable). Kept equal to the gateway's
# gateway/errors.py by a test.
TAXONOMY: dict[str, ErrorKind] = {
    "invalid_request": ErrorKind(400, "invalid_request_error", False),
    "invalid_json": ErrorKind(400, "invalid_request_error", False),
    "request_too_large": ErrorKind(413, "invalid_request_error", False),
    "request_timeout": ErrorKind(408, "invalid_request_error", True),
    "authentication_error": ErrorKind(401, "authentication_error", False),
    "permission_denied": ErrorKind(403, "permission_error", False),
    "not_found": ErrorKind(404, "invalid_request_error", False),
    "method_not_allowed": ErrorKind(405, "invalid_request_error", False),
    "model_not_found": ErrorKind(404, "invalid_request_error", False),
    "model_not_supported": ErrorKind(400, "invalid_request_error", False),
    "model_does_not_support_images": ErrorKind(400, "invalid_request_error", False),
    "context_length_exceeded": ErrorKind(400, "invalid_request_error", False),
    "rate_limited": ErrorKind(429, "rate_limit_error", False),
    "insufficient_balance": ErrorKind(402, "insufficient_quota", False),
    "upstream_rate_limited": ErrorKind(429, "rate_limit_error", True),
    "upstream_overloaded": ErrorKind(503, "api_error", True),
    "upstream_error": ErrorKind(502, "api_error", True),
    "upstream_auth_error": ErrorKind(502, "api_error", False),
    "upstream_timeout": ErrorKind(504, "timeout_error", True),
    "provider_unavailable": ErrorKind(503, "api_error", False),
    "all_candidates_failed": ErrorKind(502, "api_error", False),
    "content_filtered": ErrorKind(400, "invalid_request_error", False),
    "ledger_unavailable": ErrorKind(503, "api_error", False),
    "analytics_unavailable": ErrorKind(503, "api_error", True),
    "internal_error": ErrorKind(500, "api_error", False),
}


class TwoAPIError(Exception):
    """Base of every error this SDK raises."""

    code: str = "error"
    status: int | None = None
    request_id: str | None = None
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class APIConnectionError(TwoAPIError):
    """The gateway could not be reached, or the connection broke. Retryable."""

    code = "connection_error"
    retryable = True


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout. Retryable."""

    code = "timeout"


class APIError(TwoAPIError):
    """The gateway answered with an error. `code`, `status`, `type`, `param`,
    `request_id` (the `x-request-id` to look up in the ledger), `retryable` (from the
    taxonomy), `retry_after` (seconds, when the gateway sent `retry-after`)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int,
        type: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.type = type
        self.param = param
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body
        self.headers = headers or {}
        kind = TAXONOMY.get(code)
        self.retryable = kind.retryable if kind else status in (429, 502, 503, 504)

    def __str__(self) -> str:
        where = f", request {self.request_id}" if self.request_id else ""
        return f"{self.message} ({self.status} {self.code}{where})"


class BadRequestError(APIError):
    """400: the request is invalid."""


class InvalidRequestError(BadRequestError):
    pass


class InvalidJSONError(BadRequestError):
    pass


class ModelNotSupportedError(BadRequestError):
    """The model (or its provider) does not offer this endpoint, e.g. embeddings from Anthropic."""


class ModelDoesNotSupportImagesError(BadRequestError):
    pass


class ContextLengthExceededError(BadRequestError):
    pass


class ContentFilteredError(BadRequestError):
    pass


class AuthenticationError(APIError):
    """401: missing, unknown or revoked API key."""


class InsufficientBalanceError(APIError):
    """402: the tenant's balance or monthly cap is exhausted."""


class PermissionDeniedError(APIError):
    """403."""


class NotFoundError(APIError):
    """404: no such endpoint, resource or model."""


class ModelNotFoundError(NotFoundError):
    pass


class MethodNotAllowedError(APIError):
    """405."""


class RequestTooLargeError(APIError):
    """413."""


class RequestTimeoutError(APIError):
    """The body did not reach the gateway in time; nothing was served (retryable)."""


class RateLimitError(APIError):
    """429: a 2api limit (`rate_limited`, not retried automatically; see
    `retry_after`) or the provider's (`upstream_rate_limited`, retried)."""


class UpstreamRateLimitedError(RateLimitError):
    pass


class InternalServerError(APIError):
    """5xx."""


class UpstreamError(InternalServerError):
    """The provider failed; the gateway has already retried and fallen back."""


class UpstreamOverloadedError(UpstreamError):
    pass


class UpstreamAuthError(UpstreamError):
    pass


class UpstreamTimeoutError(UpstreamError):
    pass


class ProviderUnavailableError(UpstreamError):
    pass


class AllCandidatesFailedError(UpstreamError):
    pass


class LedgerUnavailableError(InternalServerError):
    pass


class AnalyticsUnavailableError(InternalServerError):
    """The analytics store is down (analytics endpoints only; chat is unaffected)."""


ERROR_CLASSES: dict[str, type[APIError]] = {
    "invalid_request": InvalidRequestError,
    "invalid_json": InvalidJSONError,
    "request_too_large": RequestTooLargeError,
    "request_timeout": RequestTimeoutError,
    "authentication_error": AuthenticationError,
    "permission_denied": PermissionDeniedError,
    "not_found": NotFoundError,
    "method_not_allowed": MethodNotAllowedError,
    "model_not_found": ModelNotFoundError,
    "model_not_supported": ModelNotSupportedError,
    "model_does_not_support_images": ModelDoesNotSupportImagesError,
    "context_length_exceeded": ContextLengthExceededError,
    "rate_limited": RateLimitError,
    "insufficient_balance": InsufficientBalanceError,
    "upstream_rate_limited": UpstreamRateLimitedError,
    "upstream_overloaded": UpstreamOverloadedError,
    "upstream_error": UpstreamError,
    "upstream_auth_error": UpstreamAuthError,
    "upstream_timeout": UpstreamTimeoutError,
    "provider_unavailable": ProviderUnavailableError,
    "all_candidates_failed": AllCandidatesFailedError,
    "content_filtered": ContentFilteredError,
    "ledger_unavailable": LedgerUnavailableError,
    "analytics_unavailable": AnalyticsUnavailableError,
    "internal_error": InternalServerError,
}

STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientBalanceError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    408: RequestTimeoutError,
    413: RequestTooLargeError,
    429: RateLimitError,
}


def error_from_response(
    status: int, body: Any, headers: dict[str, str], fallback_text: str = ""
) -> APIError:
    """The exception for an error response (OpenAI envelope or otherwise)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    if code is None:
        code = next((c for c, k in TAXONOMY.items() if k.status == status), "internal_error")
    message = error.get("message") or fallback_text or f"HTTP {status}"
    cls = ERROR_CLASSES.get(code) or STATUS_CLASSES.get(status) or (
        InternalServerError if status >= 500 else APIError
    )
    return cls(
        message,
        code=code,
        status=status,
        type=error.get("type"),
        param=error.get("param"),
        request_id=headers.get("x-request-id"),
        retry_after=_retry_after(headers.get("retry-after")),
        body=body,
        headers=headers,
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
