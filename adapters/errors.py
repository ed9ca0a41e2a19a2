"""Upstream failures, classified once, at the edge where they happen.

An adapter turns every failure of a provider call (an error status, a timeout, a
broken connection, a body it cannot parse) into an `UpstreamError` carrying one code
of the gateway's error taxonomy (see `gateway/errors.py`, which says per code the HTTP
status we answer with and whether the attempt loop may retry). Which provider status
means which code is the table below, not branches spread over the adapters.
"""

from __future__ import annotations

from dataclasses import dataclass

# Provider HTTP status -> taxonomy code. Anthropic's 529 is "overloaded".
STATUS_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "upstream_auth_error",
    403: "upstream_auth_error",
    404: "model_not_found",
    408: "upstream_timeout",
    413: "context_length_exceeded",
    422: "invalid_request",
    429: "upstream_rate_limited",
    500: "upstream_error",
    502: "upstream_error",
    503: "upstream_error",
    504: "upstream_timeout",
    529: "upstream_overloaded",
}

# Substrings of a provider's error message that refine a 400 into a sharper code.
MESSAGE_CODES: tuple[tuple[str, str], ...] = (
    ("context length", "context_length_exceeded"),
    ("context_length", "context_length_exceeded"),
    ("prompt is too long", "context_length_exceeded"),
    ("exceeds the maximum number of tokens", "context_length_exceeded"),
    ("content_filter", "content_filtered"),
    ("safety", "content_filtered"),
)


@dataclass(slots=True)
class UpstreamError(Exception):
    code: str  # a code of the gateway's error taxonomy
    message: str  # safe to show a client: never contains a key or prompt text
    status: int | None = None  # the provider's HTTP status, when there was one
    retry_after: float | None = None  # seconds, from the provider's retry-after

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"


def classify_status(status: int, message: str, retry_after: float | None = None) -> UpstreamError:
    code = STATUS_CODES.get(status) or ("upstream_error" if status >= 500 else "invalid_request")
    if code == "invalid_request":
        lowered = message.lower()
        code = next((c for needle, c in MESSAGE_CODES if needle in lowered), code)
    return UpstreamError(code=code, message=message, status=status, retry_after=retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `retry-after` header (delta-seconds form; dates are ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
