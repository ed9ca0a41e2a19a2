"""What the sync and async clients share: configuration, request bodies, retry
decisions, response parsing and the SSE stream state. No I/O here."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from typing import Any

import httpx

from ._errors import APIConnectionError, APIError, APITimeoutError, TwoAPIError, error_from_response
from ._types import ChatResponse, ResponseMeta, ToolCall, Usage

__version__ = "0.1.0"

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 2
RETRY_BASE_S = 0.5
RETRY_CAP_S = 8.0
RETRY_AFTER_CAP_S = 60.0

Messages = str | Iterable[dict[str, Any]]
Timeout = float | httpx.Timeout | None


class Config:
    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: Timeout,
        max_retries: int,
        default_headers: dict[str, str] | None,
    ) -> None:
        api_key = api_key or os.environ.get("TWOAPI_API_KEY")
        if not api_key:
            raise TwoAPIError("No API key: pass api_key=... or set TWOAPI_API_KEY.")
        self.api_key = api_key
        self.base_url = normalize_base_url(base_url or os.environ.get("TWOAPI_BASE_URL") or DEFAULT_BASE_URL)
        self.timeout = timeout
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_retries = max_retries
        self.headers = {
            "authorization": f"Bearer {api_key}",
            "user-agent": f"twoapi-python/{__version__}",
            "accept": "application/json",
            **(default_headers or {}),
        }


def normalize_base_url(url: str) -> str:
    """The gateway's root: accepts it with or without a trailing `/v1`."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def chat_body(
    prompt: Messages | None,
    *,
    messages: Iterable[dict[str, Any]] | None,
    model: str | None,
    system: str | None,
    routing_strategy: str | None,
    fallbacks: list[str] | None,
    max_attempts: int | None,
    routing_timeout_ms: int | None,
    max_cost: Any,
    tools: list[dict[str, Any]] | None,
    tool_choice: Any,
    temperature: float | None,
    max_tokens: int | None,
    stream: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    if prompt is not None and messages is not None:
        raise TypeError("pass a prompt or messages=, not both")
    if prompt is None and messages is None:
        raise TypeError("chat() needs a prompt or messages=")
    if isinstance(prompt, str):
        turns = [{"role": "user", "content": prompt}]
    else:
        turns = list(prompt if prompt is not None else messages)  # type: ignore[arg-type]
    if system is not None:
        turns.insert(0, {"role": "system", "content": system})
    body: dict[str, Any] = {"model": model or "auto", "messages": turns}
    routing: dict[str, Any] = {}
    if routing_strategy is not None:
        routing["strategy"] = routing_strategy
    if fallbacks:
        routing["fallbacks"] = list(fallbacks)
    if max_attempts is not None:
        routing["max_attempts"] = max_attempts
    if routing_timeout_ms is not None:
        routing["timeout_ms"] = routing_timeout_ms
    if max_cost is not None:
        routing["max_cost"] = str(max_cost)
    if routing:
        body["routing"] = routing
    for name, value in (("tools", tools), ("tool_choice", tool_choice), ("temperature", temperature),
                        ("max_tokens", max_tokens)):
        if value is not None:
            body[name] = value
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return body


def backoff_s(retry: int, error: TwoAPIError) -> float:
    """Seconds before retry number `retry` (1-based): the gateway's retry-after when
    it gave one (capped), else exponential backoff with full jitter."""
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None and retry_after <= RETRY_AFTER_CAP_S:
        return retry_after
    return random.uniform(0, min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (retry - 1)))


def should_retry(error: TwoAPIError, retry: int, max_retries: int) -> bool:
    return retry <= max_retries and error.retryable


def transport_error(error: httpx.HTTPError) -> TwoAPIError:
    if isinstance(error, httpx.TimeoutException):
        return APITimeoutError(f"The gateway did not answer in time: {error!r}")
    return APIConnectionError(f"Could not reach the gateway: {error!r}")


def status_error(response: httpx.Response, text: str) -> APIError:
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    return error_from_response(response.status_code, body, dict(response.headers), text[:500])


def parse_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise APIError(
            f"The gateway answered with a body that is not JSON: {response.text[:200]!r}",
            code="invalid_response", status=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from error


class StreamState:
    """Folds `chat.completion.chunk` events into text deltas and the final state."""

    def __init__(self, meta: ResponseMeta) -> None:
        self.meta = meta
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.model: str | None = meta.model
        self.id: str | None = None
        self._calls: dict[int, dict[str, str]] = {}
        self.done = False

    @property
    def request_id(self) -> str | None:
        return self.meta.request_id

    @property
    def provider(self) -> str | None:
        return self.meta.provider

    @property
    def content(self) -> str:
        return "".join(self.parts)

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"])
                for _, c in sorted(self._calls.items())]

    def feed(self, data: str) -> str | None:
        """One SSE `data:` payload -> the text it adds (None when it adds none)."""
        if data == "[DONE]":
            self.done = True
            return None
        event = json.loads(data)
        if "error" in event and "choices" not in event:
            error = event.get("error") or {}
            code = error.get("code") or "upstream_error"
            from ._errors import TAXONOMY

            status = TAXONOMY[code].status if code in TAXONOMY else 502
            raise error_from_response(status, event, {"x-request-id": self.request_id or ""})
        self.id = event.get("id") or self.id
        self.model = event.get("model") or self.model
        if event.get("usage"):
            self.usage = Usage.from_openai(event["usage"])
        text: str | None = None
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text = (text or "") + delta["content"]
            for call in delta.get("tool_calls") or ():
                slot = self._calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
                function = call.get("function") or {}
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] = function.get("name") or slot["name"]
                slot["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if text:
            self.parts.append(text)
        return text

    def response(self) -> ChatResponse:
        """The whole streamed answer as a ChatResponse (cost is None: a stream's
        headers leave before its cost is known; the ledger has it)."""
        model = self.model or ""
        return ChatResponse(
            content=self.content,
            model=model,
            provider=self.meta.provider or (model.split("/", 1)[0] if "/" in model else None),
            usage=self.usage or Usage(),
            cost=None,
            request_id=self.meta.request_id,
            finish_reason=self.finish_reason,
            tool_calls=self.tool_calls,
            attempts=self.meta.attempts,
            routing_strategy=self.meta.routing_strategy,
            id=self.id,
        )


def sse_data(line: str) -> str | None:
    """The payload of an SSE `data:` line; None for comments, blank and other fields."""
    if line.startswith("data:"):
        return line[5:].lstrip(" ")
    return None
