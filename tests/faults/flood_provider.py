"""A provider that streams an OpenAI chat completion as fast as the gateway will take it.

Each SSE event carries `chunk_bytes` of text; the stream runs to `total_bytes` and
then ends as OpenAI's does (finish chunk, usage chunk, `[DONE]`). It counts the bytes
it has handed to the socket (aiohttp waits for the transport to drain past 64 KiB,
so what it counts is at most that far ahead of the kernel), which is what a gateway
that stops reading holds the provider to. Its sockets' send buffer is small, so the
kernel adds little slack between "the gateway stopped reading" and "the provider is
held".
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass

import orjson
from aiohttp import web

CHUNK_BYTES = 32 * 1024
SEND_BUFFER_BYTES = 64 * 1024


@dataclass
class FloodStats:
    written: int = 0  # bytes of SSE handed to the socket, over all streams
    streams_started: int = 0
    streams_finished: int = 0  # reached [DONE]
    streams_cut: int = 0  # the gateway went away first
    open_streams: int = 0
    content_bytes: int = 0  # text in the streams that finished


class FloodProvider:
    def __init__(self, total_bytes: int, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.total_bytes = total_bytes
        self.chunk_bytes = chunk_bytes
        self.stats = FloodStats()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="flood-provider")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the flood provider did not start")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        # Accepted sockets inherit the listener's send buffer size.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self.port = sock.getsockname()[1]
        site = web.SockSite(runner, sock)
        await site.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body.get("model", "gpt-4o-mini")
        if not body.get("stream"):
            return web.json_response({"error": {"message": "this provider only streams", "type": "invalid_request"}},
                                     status=400)
        stats = self.stats
        stats.streams_started += 1
        stats.open_streams += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        def event(obj: dict) -> bytes:
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        base = {"id": "chatcmpl-flood", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        text = ("flood " * (self.chunk_bytes // 6 + 1))[: self.chunk_bytes]
        chunk = event({**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
        pieces = 0
        try:
            await self._write(response, event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"},
                                                                     "finish_reason": None}]}))
            sent = 0
            while sent < self.total_bytes:
                await self._write(response, chunk)
                sent += len(chunk)
                pieces += 1
            tokens = pieces * self.chunk_bytes // 4
            await self._write(response, event({**base, "choices": [{"index": 0, "delta": {},
                                                                     "finish_reason": "stop"}]}))
            await self._write(response, event({**base, "choices": [], "usage": {
                "prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": tokens + 5}}))
            await self._write(response, b"data: [DONE]\n\n")
            await response.write_eof()
            stats.streams_finished += 1
            stats.content_bytes += pieces * self.chunk_bytes
        except ConnectionError:  # the gateway dropped the stream: nobody to answer
            stats.streams_cut += 1
        except asyncio.CancelledError:
            stats.streams_cut += 1
            raise
        finally:
            stats.open_streams -= 1
        return response

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        await response.write(data)
        self.stats.written += len(data)
