"""Helpers for the adapter tests: recorded native responses, feeding SSE through a
stream state, and a scriptable fake provider (aiohttp server) that replays them.
(A uniquely named module rather than conftest, so test modules can import it.)"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.sse import SSEParser

RECORDINGS = Path(__file__).with_name("recordings")


def recording(name: str) -> bytes:
    return (RECORDINGS / name).read_bytes()


def run_stream(state: Any, raw: bytes, piece: int | None = None) -> list[dict[str, Any]]:
    """Feed a recorded SSE body through SSEParser and a stream state (in `piece`-byte
    network chunks, or whole); return the choice dicts it produced."""
    parser = SSEParser()
    out: deque[dict[str, Any]] = deque()
    step = piece or len(raw) or 1
    for start in range(0, len(raw), step):
        for event, data in parser.feed(raw[start : start + step]):
            state.handle(event, data, out)
    return list(out)


@dataclass
class Reply:
    """What the fake provider answers with."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] | None = None  # a streamed (chunked) body, one write each
    delay: float = 0.0  # before the status line
    chunk_delay: float = 0.0  # between chunks
    # after the chunks: "end"; "hang" (keep writing SSE comments until the client goes);
    # "stall" (write nothing for a minute); "reset" (drop the connection)
    then: str = "end"


@dataclass
class Seen:
    path: str
    query: str
    headers: dict[str, str]
    json: Any
    peer: Any


class FakeProvider:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.seen: list[Seen] = []
        self.disconnected = asyncio.Event()
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.seen.append(
            Seen(
                path=request.path,
                query=request.query_string,
                headers=dict(request.headers),
                json=orjson.loads(raw) if raw else None,
                peer=request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        reply = self.replies.popleft() if self.replies else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.chunks is None:
            return web.Response(
                status=reply.status,
                body=reply.body,
                headers={"Content-Type": reply.content_type, **reply.headers},
            )
        response = web.StreamResponse(
            status=reply.status,
            headers={"Content-Type": "text/event-stream", **reply.headers},
        )
        await response.prepare(request)
        try:
            for chunk in reply.chunks:
                await response.write(chunk)
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
            if reply.then == "reset":
                assert request.transport is not None
                request.transport.abort()
                return response
            if reply.then == "stall":
                await asyncio.sleep(60)
            if reply.then == "hang":
                while True:  # keep the stream open; notice when the client goes away
                    await asyncio.sleep(0.01)
                    await response.write(b": keep-alive\n\n")
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            self.disconnected.set()
        except asyncio.CancelledError:  # the test server cancels handlers on disconnect
            self.disconnected.set()
            raise
        return response
