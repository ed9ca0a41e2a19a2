"""A lean Server-Sent Events decoder (the WHATWG `text/event-stream` rules).

`SSEParser.feed(chunk)` takes raw network bytes, in whatever pieces they arrive, and
returns the events completed by that piece as `(event, data)` pairs: `event` is the
event type (`"message"` when the stream names none) and `data` the event's data as
bytes (several `data:` lines joined with `\\n`), ready for `orjson.loads`.

Handled: `event:` and multi-line `data:` fields, LF / CRLF / CR line endings (a CR
at the end of one chunk and an LF at the start of the next are one line break),
comment lines (`: ping`), `id:` / `retry:` and unknown fields (ignored), a leading
UTF-8 BOM, and lines or events split anywhere across chunks. Per the spec an event
is dispatched only at its terminating blank line, so an event cut off by the end of
the stream is never returned.

It allocates one bytes slice per event (its data) plus the returned list; no
per-line objects. `aiter_sse()` wraps it for any async iterable of byte chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

_BOM = b"\xef\xbb\xbf"
_COLON = 58  # ord(":")
_SPACE = 32  # ord(" ")


class SSEParser:
    __slots__ = ("_buf", "_data", "_event", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._buf = b""  # an incomplete line
        self._data: bytes | None = None  # data of the event being assembled
        self._event: str | None = None  # its type, if an `event:` line named one
        self._skip_lf = False
        self._started = False

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        if not chunk:
            return []
        if self._skip_lf:
            # The previous chunk ended with CR: an LF starting this one is its CRLF.
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if self._buf:
            chunk = self._buf + chunk
        elif not self._started:
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            self._buf = chunk
            return []
        self._buf = chunk[end + 1 :]

        events: list[tuple[str, bytes]] = []
        data = self._data
        event = self._event
        pos = 0
        find = chunk.find
        startswith = chunk.startswith
        while pos <= end:
            nl = find(b"\n", pos, end + 1)
            if nl == pos:  # blank line: dispatch
                if data is not None:
                    events.append((event or "message", data))
                data = None
                event = None
            elif startswith(b"data", pos):
                start = pos + 4
                if start == nl:  # "data" with no colon: an empty value
                    value = b""
                elif chunk[start] == _COLON:
                    start += 1
                    if start < nl and chunk[start] == _SPACE:
                        start += 1
                    value = chunk[start:nl]
                else:  # some other field that merely starts with "data"
                    pos = nl + 1
                    continue
                data = value if data is None else data + b"\n" + value
            elif startswith(b"event:", pos):
                start = pos + 6
                if start < nl and chunk[start] == _SPACE:
                    start += 1
                event = chunk[start:nl].decode("utf-8", "replace")
            # comments (":..."), id, retry and unknown fields are ignored
            pos = nl + 1
        self._data = data
        self._event = event
        return events


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, bytes]]:
    """(event, data) pairs from a stream of byte chunks, e.g. `response.content.iter_any()`."""
    parser = SSEParser()
    async for chunk in chunks:
        for item in parser.feed(chunk):
            yield item
