"""The asyncio client: the same API as `TwoAPI`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterable
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


class AsyncTwoAPI:
    """The asyncio twin of `TwoAPI`:

    >>> client = AsyncTwoAPI(api_key="2api_...")
    >>> (await client.chat("Hello!")).content
    >>> async for chunk in client.chat_stream("Tell me a story"): ...
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: dict[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = Config(api_key, base_url, timeout, max_retries, default_headers)
        self._own_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    async def _send(self, method: str, path: str, *, json: Any = None, params: Any = None,
                    timeout: Timeout = _UNSET, stream: bool = False) -> httpx.Response:
        config = self._config
        request = self._http.build_request(
            method, config.base_url + path, json=json, params=params, headers=config.headers,
            timeout=config.timeout if timeout is _UNSET else timeout,
        )
        retry = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.HTTPError as error:
                failure: TwoAPIError = transport_error(error)
                failure.__cause__ = error
            else:
                if response.status_code < 400:
                    return response
                text = (await response.aread()).decode("utf-8", "replace")
                await response.aclose()
                failure = status_error(response, text)
            retry += 1
            if not should_retry(failure, retry, config.max_retries):
                raise failure
            await asyncio.sleep(backoff_s(retry, failure))

    async def close(self) -> None:
        if self._own_client:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncTwoAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def chat(
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
        body = chat_body(prompt, messages=messages, model=model, system=system, routing_strategy=routing_strategy,
                         fallbacks=fallbacks, max_attempts=max_attempts, routing_timeout_ms=routing_timeout_ms,
                         max_cost=max_cost, tools=tools, tool_choice=tool_choice, temperature=temperature,
                         max_tokens=max_tokens, stream=False, extra=extra)
        response = await self._send("POST", "/v1/chat/completions", json=body, timeout=timeout)
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
    ) -> AsyncChatStream:
        """`async for chunk in client.chat_stream(...)`; or `stream = await
        client.chat_stream(...)` to open it first (errors before the first byte are
        raised there), or `async with client.chat_stream(...) as stream`."""
        body = chat_body(prompt, messages=messages, model=model, system=system, routing_strategy=routing_strategy,
                         fallbacks=fallbacks, max_attempts=max_attempts, routing_timeout_ms=routing_timeout_ms,
                         max_cost=max_cost, tools=tools, tool_choice=tool_choice, temperature=temperature,
                         max_tokens=max_tokens, stream=True, extra=extra)
        return AsyncChatStream(self, body, timeout)

    async def embeddings(self, input: str | list[str], *, model: str = "openai/text-embedding-3-small",
                         dimensions: int | None = None, timeout: Timeout = _UNSET,
                         **extra: Any) -> EmbeddingsResponse:
        body: dict[str, Any] = {"model": model, "input": input, **extra}
        if dimensions is not None:
            body["dimensions"] = dimensions
        response = await self._send("POST", "/v1/embeddings", json=body, timeout=timeout)
        return EmbeddingsResponse.from_body(parse_json(response), ResponseMeta.from_headers(response.headers))

    async def models(self, *, timeout: Timeout = _UNSET) -> list[Model]:
        body = parse_json(await self._send("GET", "/v1/models", timeout=timeout))
        return [Model.from_body(item) for item in body.get("data") or ()]

    async def usage(self, *, start: str | None = None, end: str | None = None, group_by: str | None = None,
                    timeout: Timeout = _UNSET) -> dict[str, Any]:
        params = {k: v for k, v in (("start", start), ("end", end), ("group_by", group_by)) if v is not None}
        return parse_json(await self._send("GET", "/v1/usage", params=params, timeout=timeout))


class AsyncChatStream:
    """Async-iterate for text chunks; afterwards `usage`, `content`, `finish_reason`,
    `tool_calls`, `model` and `await response()`."""

    def __init__(self, client: AsyncTwoAPI, body: dict[str, Any], timeout: Timeout) -> None:
        self._client = client
        self._body = body
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._state: StreamState | None = None
        self._iterator: AsyncIterator[str] | None = None

    async def open(self) -> AsyncChatStream:
        if self._response is None:
            self._response = await self._client._send(
                "POST", "/v1/chat/completions", json=self._body, timeout=self._timeout, stream=True
            )
            self._state = StreamState(ResponseMeta.from_headers(self._response.headers))
        return self

    def __await__(self) -> Generator[Any, None, AsyncChatStream]:
        return self.open().__await__()

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterator is None:
            self._iterator = self._chunks()
        return self._iterator

    async def _chunks(self) -> AsyncIterator[str]:
        await self.open()
        assert self._response is not None and self._state is not None
        data: list[str] = []
        try:
            async for line in self._response.aiter_lines():
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
            await self._response.aclose()

    async def close(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def until_done(self) -> AsyncChatStream:
        async for _ in self:
            pass
        return self

    async def response(self) -> ChatResponse:
        await self.until_done()
        assert self._state is not None
        return self._state.response()

    def _known(self) -> StreamState:
        if self._state is None:
            raise TwoAPIError("The stream is not open yet: iterate it or await it first.")
        return self._state

    @property
    def text(self) -> str:
        return self._known().content

    content = text

    @property
    def usage(self) -> Usage | None:
        return self._known().usage

    @property
    def finish_reason(self) -> str | None:
        return self._known().finish_reason

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self._known().tool_calls

    @property
    def model(self) -> str | None:
        return self._known().model

    @property
    def provider(self) -> str | None:
        return self._known().provider

    @property
    def request_id(self) -> str | None:
        return self._known().request_id

    @property
    def routing_strategy(self) -> str | None:
        return self._known().meta.routing_strategy
