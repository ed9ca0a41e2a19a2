"""POST /v1/chat/completions answered straight from ASGI, in front of the Quart app.

The gateway's hottest route spends its framework time in Quart's per-request
machinery: a request object with werkzeug headers, app and request contexts, two tasks
per request (one reading the body and watching for a disconnect, one running the
handler) joined by `asyncio.wait`, the body read under `wait_for`, and the response
iterated back through `send`. py-spy at 32 connections put that at 15.6% of the
serving process's Python CPU (bench/README.md). This edge does only what the route
needs, around the same handler (`gateway.chat.chat_completions`), and passes every
other request to Quart. What Quart did, it does the same way:

- the API key is checked before the body is read (401 envelope);
- a body declared or streamed over `max_body_bytes` gets 413; one that has not
  arrived within `body_timeout_s` gets werkzeug's RequestTimeout, answered by the
  app's own `http_error_response` (as Quart raises it);
- a client that disconnects cancels the handler, as Quart cancels its handler task
  (a stream then records `client_disconnected`);
- an unexpected exception is answered by the app's `unexpected_response` (logged by
  type and place, 500 envelope).

`TWOAPI_CHAT_EDGE=off` leaves the route to Quart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from quart import Response
from quart.utils import encode_headers
from quart.wrappers.response import DataBody
from werkzeug.exceptions import HTTPException, RequestTimeout

from gateway.chat import chat_completions, error_response
from gateway.errors import GatewayError, too_large

PATH = "/v1/chat/completions"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
HTTPErrorResponse = Callable[[HTTPException, str, str, int], Response]
UnexpectedResponse = Callable[[Exception, str], Response]


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class ChatEdge:
    def __init__(self, app: ASGIApp, services: Any, max_body_bytes: int, body_timeout_s: float,
                 http_error_response: HTTPErrorResponse, unexpected_response: UnexpectedResponse) -> None:
        self.app = app
        self.services = services
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.http_error_response = http_error_response
        self.unexpected_response = unexpected_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        authorization, length = _headers(scope["headers"])
        try:
            caller = await self.services.authenticator.authenticate(authorization)
            if length is not None and length > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
        except GatewayError as error:
            await self._drain(receive)
            await _send(send, error_response(error))
            return
        try:
            raw = await self._body(receive)
        except GatewayError as error:
            await _send(send, error_response(error))
            return
        except HTTPException as error:
            await _send(send, self.http_error_response(error, "POST", PATH, self.max_body_bytes))
            return
        except ClientGone:
            return
        # From here the client may leave at any moment: a watcher cancels the handler
        # when it does, as Quart cancels its handler task.
        handler = asyncio.current_task()
        assert handler is not None
        gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch(receive, handler, gone))
        try:
            await _send(send, await self._respond(caller, raw))
        except asyncio.CancelledError:
            if not gone.is_set():
                raise
            handler.uncancel()
        finally:
            watcher.cancel()

    async def _drain(self, receive: Receive) -> None:
        """Read and drop the body of a request refused before it was read (within the
        body timeout), before answering: a client still sending a large body would
        otherwise block on a server that no longer reads it, and never see the answer
        (Quart's receiving task reads it all the same)."""
        with suppress(TimeoutError):
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return

    async def _respond(self, caller: Any, raw: bytes) -> Response:
        try:
            return await chat_completions(self.services, caller, raw)
        except Exception as error:  # as the app's errorhandler(Exception)
            return self.unexpected_response(error, PATH)

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size <= self.max_body_bytes:
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise RequestTimeout() from None
        # A body past the limit is read to its end (and dropped) before the 413, for
        # the reason `_drain` gives.
        if size > self.max_body_bytes:
            raise too_large(self.max_body_bytes)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, int | None]:
    """The Authorization header and the declared Content-Length (None when absent or
    not a number, as werkzeug reads it)."""
    authorization = length = None
    for name, value in headers:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin1")
        elif name == b"content-length" and length is None:
            text = value.decode("latin1").strip()
            length = int(text) if text.isdigit() else None
    return authorization, length


async def _send(send: Send, response: Response) -> None:
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": encode_headers(response.headers)})
    body = response.response
    if isinstance(body, DataBody):  # a whole body: one send, not a chunk and an end
        await send({"type": "http.response.body", "body": body.data, "more_body": False})
        return
    async with body as chunks:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk.encode() if isinstance(chunk, str) else chunk,
                        "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch(receive: Receive, handler: asyncio.Task[Any], gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            handler.cancel()
            return
