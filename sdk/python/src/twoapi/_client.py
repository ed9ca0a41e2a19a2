"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from ._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    Config,
    Messages,
    StreamState,
    Timeout,
    backoff_s,
    chat_body,
    parse_json,
    should_retry,
    sse_data,
    status_error,
    transport_error,
)
from ._errors import TwoAPIError
from ._types import ChatResponse, EmbeddingsResponse, Model, ResponseMeta, ToolCall, Usage

_UNSET: Any = object()


class TwoAPI:
    """A client of a 2api gateway.

    >>> client = TwoAPI(api_key="2api_...")          # or TWOAPI_API_KEY
    >>> client.chat("Hello!").content

    `base_url` (or `TWOAPI_BASE_URL`, default http://127.0.0.1:8080) is the gateway's
    root, with or without `/v1`. `timeout` is seconds per HTTP request (or an
    `httpx.Timeout`). Errors the taxonomy marks retryable, connection failures and
    timeouts are retried `max_retries` times with backoff (honouring `retry-after`);
    nothing else is retried. Streams are retried only before their first byte.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: dict[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._config = Config(api_key, base_url, timeout, max_retries, default_headers)
        self._own_client = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    # -- plumbing ------------------------------------------------------------

    def _send(self, method: str, path: str, *, json: Any = None, params: Any = None,
              timeout: Timeout = _UNSET, stream: bool = False) -> httpx.Response:
        config = self._config
        request = self._http.build_request(
            method, config.base_url + path, json=json, params=params, headers=config.headers,
            timeout=config.timeout if timeout is _UNSET else timeout,
        )
        retry = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
            except httpx.HTTPError as error:
                failure: TwoAPIError = transport_error(error)
                failure.__cause__ = error
            else:
                if response.status_code < 400:
                    return response
                text = response.read().decode("utf-8", "replace")
                response.close()
                failure = status_error(response, text)
            retry += 1
            if not should_retry(failure, retry, config.max_retries):
                raise failure
            time.sleep(backoff_s(retry, failure))

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    def __enter__(self) -> TwoAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API -------------------------------------------------------------

    def chat(
        self,
        prompt: Messages | None = None,
        *,
        messages: Iterable[dict[str, Any]] | None = None,
        model: str | None = None,
        system: str | None = None,
        routing_strategy: str | None = None,
        fallbacks: list[str] | None = None,
        max_attempts: int | None = None,
        routing_timeout_ms: int | None = None,
        max_cost: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: Timeout = _UNSET,
        **extra: Any,
    ) -> ChatResponse:
        """One chat completion. `prompt` is a user message (or a list of messages);
        without `model` the gateway picks one (`auto`, by `routing_strategy`:
        cost, latency or quality). Other OpenAI fields pass through `extra`."""
        body = chat_body(prompt, messages=messages, model=model, system=system, routing_strategy=routing_strategy,
                         fallbacks=fallbacks, max_attempts=max_attempts, routing_timeout_ms=routing_timeout_ms,
                         max_cost=max_cost, tools=tools, tool_choice=tool_choice, temperature=temperature,
                         max_tokens=max_tokens, stream=False, extra=extra)
        response = self._send("POST", "/v1/chat/completions", json=body, timeout=timeout)
        return ChatResponse.from_body(parse_json(response), ResponseMeta.from_headers(response.headers))

    def chat_stream(
        self,
        prompt: Messages | None = None,
        *,
        messages: Iterable[dict[str, Any]] | None = None,
        model: str | None = None,
        system: str | None = None,
        routing_strategy: str | None = None,
        fallbacks: list[str] | None = None,
        max_attempts: int | None = None,
        routing_timeout_ms: int | None = None,
        max_cost: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: Timeout = _UNSET,
        **extra: Any,
    ) -> ChatStream:
        """A streamed chat completion: iterate it for text chunks; afterwards
        `.usage`, `.content`, `.finish_reason`, `.tool_calls` and `.response()` hold
        the whole answer. Use it as a context manager (or call `.close()`) to release
        the connection when you stop early."""
        body = chat_body(prompt, messages=messages, model=model, system=system, routing_strategy=routing_strategy,
                         fallbacks=fallbacks, max_attempts=max_attempts, routing_timeout_ms=routing_timeout_ms,
                         max_cost=max_cost, tools=tools, tool_choice=tool_choice, temperature=temperature,
                         max_tokens=max_tokens, stream=True, extra=extra)
        response = self._send("POST", "/v1/chat/completions", json=body, timeout=timeout, stream=True)
        return ChatStream(response)

    def embeddings(self, input: str | list[str], *, model: str = "openai/text-embedding-3-small",
                   dimensions: int | None = None, timeout: Timeout = _UNSET, **extra: Any) -> EmbeddingsResponse:
        """Embeddings of a string or a list of strings (`POST /v1/embeddings`)."""
        body: dict[str, Any] = {"model": model, "input": input, **extra}
        if dimensions is not None:
            body["dimensions"] = dimensions
        response = self._send("POST", "/v1/embeddings", json=body, timeout=timeout)
        return EmbeddingsResponse.from_body(parse_json(response), ResponseMeta.from_headers(response.headers))

    def models(self, *, timeout: Timeout = _UNSET) -> list[Model]:
        """The models the gateway can route to, as `provider/model` ids."""
        body = parse_json(self._send("GET", "/v1/models", timeout=timeout))
        return [Model.from_body(item) for item in body.get("data") or ()]

    def usage(self, *, start: str | None = None, end: str | None = None, group_by: str | None = None,
              timeout: Timeout = _UNSET) -> dict[str, Any]:
        """The calling tenant's usage, cost and balance (`GET /v1/usage`), as JSON."""
        params = {k: v for k, v in (("start", start), ("end", end), ("group_by", group_by)) if v is not None}
        return parse_json(self._send("GET", "/v1/usage", params=params, timeout=timeout))


class ChatStream:
    """Iterate for text chunks (str). After the iteration: `usage`, `content`,
    `finish_reason`, `tool_calls`, `model`, and `response()`. `request_id` and
    `provider` are known from the start (response headers)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._state = StreamState(ResponseMeta.from_headers(response.headers))
        self._iterator: Iterator[str] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._iterator is None:
            self._iterator = self._chunks()
        return self._iterator

    def _chunks(self) -> Iterator[str]:
        data: list[str] = []
        try:
            for line in self._response.iter_lines():
                if line:
                    payload = sse_data(line)
                    if payload is not None:
                        data.append(payload)
                    continue
                if not data:
                    continue
                text = self._state.feed("\n".join(data))
                data = []
                if text:
                    yield text
                if self._state.done:
                    break
            if data:
                text = self._state.feed("\n".join(data))
                if text:
                    yield text
        except httpx.HTTPError as error:
            raise transport_error(error) from error
        finally:
            self._response.close()

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def until_done(self) -> ChatStream:
        """Consume the rest of the stream; returns self."""
        for _ in self:
            pass
        return self

    def response(self) -> ChatResponse:
        self.until_done()
        return self._state.response()

    @property
    def text(self) -> str:
        """All text so far."""
        return self._state.content

    content = text

    @property
    def usage(self) -> Usage | None:
        return self._state.usage

    @property
    def finish_reason(self) -> str | None:
        return self._state.finish_reason

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self._state.tool_calls

    @property
    def model(self) -> str | None:
        return self._state.model

    @property
    def provider(self) -> str | None:
        return self._state.provider

    @property
    def request_id(self) -> str | None:
        return self._state.request_id

    @property
    def routing_strategy(self) -> str | None:
        return self._state.meta.routing_strategy

