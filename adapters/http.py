"""Everything the adapters do on the network, in one place.

- `HttpClient`: the one shared aiohttp session of a gateway process, created lazily
  inside the running loop (pooled keep-alive connections, DNS cache, orjson).
- `post_json` / `open_stream`: one upstream call, with the failure of every kind
  (error status, timeout, broken connection, unreadable body) turned into an
  `UpstreamError` by the provider's own error parser.
- `SSEChatStream`: the `ChatStream` the adapters return; it reads the provider's SSE
  body through `SSEParser` and a provider's small stream-state object, which turns
  native events into OpenAI choice dicts.
- `WireAdapter`: the `Adapter` shell shared by the providers: a provider module
  supplies only pure pieces (endpoint, request builder, response / error parsers,
  stream state) and this class does the I/O around them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import lru_cache
from typing import Any, ClassVar, Protocol

import aiohttp
import orjson
from yarl import URL

from .base import Completion, Target, Usage
from .common import dumps_str, error_object, malformed, scrub
from .errors import UpstreamError, parse_retry_after
from .sse import SSEParser

CONNECT_TIMEOUT_S = 10.0  # streams: at most this long to get a connection
DRAIN_TIMEOUT_S = 1.0  # after a stream's end marker, wait this long for the body's end
MAX_BODY_BYTES = 64 * 1024 * 1024  # a non-streamed upstream answer, at most
_PARSE_ERRORS = (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError, ValueError)


class HttpClient:
    """Holds the process's aiohttp session; create one per gateway process."""

    def __init__(
        self,
        *,
        limit: int = 1024,
        limit_per_host: int = 0,
        keepalive_timeout: float = 60.0,
        ttl_dns_cache: int = 300,
    ) -> None:
        self._options = {
            "limit": limit,
            "limit_per_host": limit_per_host,
            "keepalive_timeout": keepalive_timeout,
            "ttl_dns_cache": ttl_dns_cache,
        }
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session; made on first use inside a running event loop."""
        session = self._session
        if session is not None and not session.closed and self._loop is _running_loop():
            return session
        return self._create()

    def _create(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()  # RuntimeError outside a loop, by design
        connector = aiohttp.TCPConnector(use_dns_cache=True, **self._options)
        # A session left behind by another (finished) loop cannot be closed from this
        # one; it is dropped and its connections die with that loop.
        self._session = aiohttp.ClientSession(
            connector=connector,
            json_serialize=dumps_str,
            json_serialize_bytes=orjson.dumps,
            timeout=aiohttp.ClientTimeout(total=None),
            raise_for_status=False,
        )
        self._loop = loop
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is _running_loop():
            await session.close()
        self._loop = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@lru_cache(maxsize=64)
def plain_timeout(timeout_s: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=timeout_s)


@lru_cache(maxsize=64)
def stream_timeout(timeout_s: float) -> aiohttp.ClientTimeout:
    # No total for streams (they may last long); a connect bound and a per-read
    # bound, which also covers the wait for the response headers (TTFT).
    return aiohttp.ClientTimeout(
        total=None, connect=min(CONNECT_TIMEOUT_S, timeout_s), sock_read=timeout_s
    )


class ErrorParser(Protocol):
    def __call__(self, status: int, body: bytes, retry_after: float | None) -> UpstreamError: ...


def _timeout_error(provider: str, timeout_s: float) -> UpstreamError:
    return UpstreamError("upstream_timeout", f"{provider} did not answer within {timeout_s:g}s")


def _connection_error(provider: str, exc: BaseException) -> UpstreamError:
    detail = str(exc) or type(exc).__name__
    return UpstreamError("upstream_error", f"connection to {provider} failed: {detail}")


def _status_error(
    provider: str, status: int, body: bytes, headers: Any, parse_error: ErrorParser
) -> UpstreamError:
    if status < 400:
        return UpstreamError(
            "upstream_error", f"{provider} answered with unexpected HTTP {status}", status
        )
    return parse_error(status, body, parse_retry_after(headers.get("retry-after")))


async def post_json(
    session: aiohttp.ClientSession,
    url: URL,
    headers: dict[str, str],
    payload: bytes,
    timeout_s: float,
    provider: str,
    parse_error: ErrorParser,
) -> Any:
    """POST `payload`, return the parsed JSON of a 2xx answer; raise UpstreamError otherwise."""
    try:
        async with session.post(
            url,
            data=payload,
            headers=headers,
            timeout=plain_timeout(timeout_s),
            allow_redirects=False,
        ) as resp:
            body = await _read_capped(resp, provider)
            status = resp.status
            if status >= 300:
                raise _status_error(provider, status, body, resp.headers, parse_error)
    except UpstreamError:
        raise
    except TimeoutError as exc:
        raise _timeout_error(provider, timeout_s) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise _connection_error(provider, exc) from exc
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise malformed(provider) from None


async def _read_capped(resp: aiohttp.ClientResponse, provider: str) -> bytes:
    """The whole body, unless it is larger than any answer we relay (images as base64
    included): then the answer is malformed, rather than our memory unbounded."""
    if (resp.content_length or 0) > MAX_BODY_BYTES:
        raise malformed(provider)
    parts: list[bytes] = []
    size = 0
    while chunk := await resp.content.readany():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise malformed(provider)
        parts.append(chunk)
    return b"".join(parts)


async def open_stream(
    session: aiohttp.ClientSession,
    url: URL,
    headers: dict[str, str],
    payload: bytes,
    timeout_s: float,
    provider: str,
    parse_error: ErrorParser,
    error_in: Any,
) -> aiohttp.ClientResponse:
    """POST `payload` and return the response once it has a 2xx status and an SSE body.

    Anything else (error status, JSON error body, timeout, refused connection) raises
    UpstreamError before a byte of the stream was produced, so the caller may retry.
    """
    try:
        resp = await session.post(
            url,
            data=payload,
            headers=headers,
            timeout=stream_timeout(timeout_s),
            allow_redirects=False,
        )
    except TimeoutError as exc:
        raise _timeout_error(provider, timeout_s) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise _connection_error(provider, exc) from exc
    status = resp.status
    if status < 300 and not resp.headers.get("Content-Type", "").startswith("application/json"):
        return resp
    try:
        body = await resp.read()
    except TimeoutError as exc:
        raise _timeout_error(provider, timeout_s) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise _connection_error(provider, exc) from exc
    finally:
        resp.release()
    if status >= 300:
        raise _status_error(provider, status, body, resp.headers, parse_error)
    # A 2xx with a JSON body where a stream was asked for: an error object, or junk.
    obj = error_object(body)
    raise (error_in(obj) if obj is not None else None) or malformed(provider)


class StreamState(Protocol):
    """A provider's stream translation: native SSE events in, OpenAI choice dicts out."""

    usage: Usage | None
    finish_reason: str | None
    done: bool  # the provider's end-of-stream marker was seen

    def handle(self, event: str, data: bytes, out: deque[dict[str, Any]]) -> None: ...

    def end(self) -> None:
        """Called at the end of the body; raises UpstreamError if the stream was cut."""


class SSEChatStream:
    """The `ChatStream` of every adapter: SSE body -> StreamState -> choice dicts."""

    __slots__ = ("_api_key", "_closed", "_error", "_out", "_parser", "_provider", "_read",
                 "_resp", "_state", "_timeout_s")

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        state: StreamState,
        provider: str,
        api_key: str,
        timeout_s: float,
    ) -> None:
        self._resp = resp
        self._read = resp.content.readany
        self._state = state
        self._parser = SSEParser()
        self._out: deque[dict[str, Any]] = deque()
        self._error: UpstreamError | None = None
        self._closed = False
        self._provider = provider
        self._api_key = api_key
        self._timeout_s = timeout_s

    @property
    def usage(self) -> Usage | None:
        return self._state.usage

    @property
    def finish_reason(self) -> str | None:
        return self._state.finish_reason

    def __aiter__(self) -> SSEChatStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        out = self._out
        while not out:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._closed:
                raise StopAsyncIteration
            if self._state.done:
                await self._drain()
                raise StopAsyncIteration
            try:
                chunk = await self._read()
            except TimeoutError as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                raise self._fail(_timeout_error(self._provider, self._timeout_s)) from exc
            except (aiohttp.ClientError, OSError) as exc:
                if self._closed:  # aclose() from another task broke the read
                    raise StopAsyncIteration from None
                raise self._fail(
                    UpstreamError("upstream_error", f"{self._provider} stream broke off: {exc}")
                ) from exc
            if not chunk:  # end of body
                if self._closed:
                    raise StopAsyncIteration
                self._release()
                try:
                    self._state.end()
                except UpstreamError as exc:
                    raise self._fail(exc) from None
                raise StopAsyncIteration
            try:
                for event, data in self._parser.feed(chunk):
                    self._state.handle(event, data, out)
            except UpstreamError as exc:
                self._error = self._fail(exc)  # raised once what came before is yielded
            except _PARSE_ERRORS:
                self._error = self._fail(malformed(self._provider))
        return out.popleft()

    def parsed(self) -> list[dict[str, Any]]:
        """The choices already parsed from what was read (none awaited), taken out of
        the stream: a relay sends them in one write with the one just yielded."""
        if not self._out:
            return []
        ready = list(self._out)
        self._out.clear()
        return ready

    async def aclose(self) -> None:
        """Drop the upstream connection now (unless already done); idempotent."""
        self._out.clear()
        self._error = None
        if not self._closed:
            self._closed = True
            self._resp.close()

    def _release(self) -> None:
        """The body was read to its end: hand the connection back to the pool."""
        self._closed = True
        self._resp.release()

    def _fail(self, error: UpstreamError) -> UpstreamError:
        self._closed = True
        self._resp.close()
        error.message = scrub(error.message, self._api_key)
        return error

    async def _drain(self) -> None:
        """After the end marker, read the (normally already received) end of the body so
        the connection can be reused; a server that lingers gets the connection closed."""
        content = self._resp.content
        if not content.at_eof():
            try:
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    while await content.readany():
                        pass
            except (TimeoutError, aiohttp.ClientError, OSError):
                self._closed = True
                self._resp.close()
                return
        self._release()


class WireAdapter:
    """The `Adapter` shell: I/O around a provider module's pure translation functions.

    Subclasses set `provider` and the pure pieces below (usually module functions
    wrapped in `staticmethod`), and implement `endpoint()`.
    """

    provider: ClassVar[str]
    build_request: Any  # (body, model, stream) -> native request dict
    parse_response: Any  # (native JSON) -> Completion
    parse_error: Any  # (status, body bytes, retry_after) -> UpstreamError
    error_in: Any  # (parsed JSON) -> UpstreamError | None, for error objects in a 2xx
    stream_state: Any  # () -> StreamState

    def __init__(self, http: HttpClient, *, max_cached_targets: int = 4096) -> None:
        self._http = http
        self._endpoints: dict[tuple[Target, bool], tuple[URL, dict[str, str]]] = {}
        self._max_cached = max_cached_targets

    def endpoint(self, target: Target, stream: bool) -> tuple[str, dict[str, str]]:
        """URL and request headers for `target` (called once per target, then cached)."""
        raise NotImplementedError

    def _endpoint(self, target: Target, stream: bool) -> tuple[URL, dict[str, str]]:
        key = (target, stream)
        found = self._endpoints.get(key)
        if found is None:
            url, headers = self.endpoint(target, stream)
            if len(self._endpoints) >= self._max_cached:
                self._endpoints.clear()
            found = self._endpoints[key] = (URL(url), headers)
        return found

    async def complete(self, body: dict[str, Any], target: Target) -> Completion:
        try:
            url, headers = self._endpoint(target, False)
            payload = orjson.dumps(self.build_request(body, target.model, False))
            data = await post_json(
                self._http.session, url, headers, payload, target.timeout_s,
                self.provider, self.parse_error,
            )
            try:
                return self.parse_response(data)
            except UpstreamError:
                raise
            except _PARSE_ERRORS as exc:
                raise malformed(self.provider) from exc
        except UpstreamError as exc:
            exc.message = scrub(exc.message, target.api_key)
            raise

    async def call_json(self, url: str, headers: dict[str, str], payload: Any, target: Target,
                        parse: Any) -> Any:
        """One plain JSON call beside chat (embeddings, images): `parse` applied to the
        parsed 2xx body, every failure an UpstreamError with the key scrubbed."""
        try:
            data = await post_json(
                self._http.session, URL(url), headers, orjson.dumps(payload), target.timeout_s,
                self.provider, self.parse_error,
            )
            error = self.error_in(data)
            if error is not None:
                raise error
            try:
                return parse(data)
            except UpstreamError:
                raise
            except _PARSE_ERRORS as exc:
                raise malformed(self.provider) from exc
        except UpstreamError as exc:
            exc.message = scrub(exc.message, target.api_key)
            raise

    async def stream(self, body: dict[str, Any], target: Target) -> SSEChatStream:
        try:
            url, headers = self._endpoint(target, True)
            payload = orjson.dumps(self.build_request(body, target.model, True))
            resp = await open_stream(
                self._http.session, url, headers, payload, target.timeout_s,
                self.provider, self.parse_error, self.error_in,
            )
        except UpstreamError as exc:
            exc.message = scrub(exc.message, target.api_key)
            raise
        return SSEChatStream(resp, self.stream_state(), self.provider, target.api_key,
                             target.timeout_s)
