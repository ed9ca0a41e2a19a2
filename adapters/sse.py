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
# An upstream that never ends a line (or an event) must not grow our memory without
# bound: past this many bytes pending, the stream is malformed.
MAX_PENDING_BYTES = 16 * 1024 * 1024


class SSEOverflow(ValueError):
    """A line or an event longer than MAX_PENDING_BYTES."""
_COLON = 58  # ord(":")
_SPACE = 32  # ord(" ")


class SSEParser:
    __slots__ = ("_data", "_event", "_skip_lf", "_started", "_tail", "_tail_len")

    def __init__(self) -> None:
        # The pieces of an incomplete line, joined once its end arrives (joining on
        # every piece would cost quadratic time for a long line).
        self._tail: list[bytes] = []
        self._tail_len = 0
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
        if self._tail:
            if b"\n" not in chunk and b"\r" not in chunk:
                self._keep(chunk)
                return []
            chunk = b"".join(self._tail) + chunk
            self._tail, self._tail_len = [], 0
        elif not self._started:
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            self._keep(chunk)
            return []
        if end + 1 < len(chunk):
            self._keep(chunk[end + 1 :])

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
        if data is not None and len(data) > MAX_PENDING_BYTES:
            raise SSEOverflow(f"an event of more than {MAX_PENDING_BYTES} bytes")
        self._data = data
        self._event = event
        return events

    def _keep(self, piece: bytes) -> None:
        self._tail.append(piece)
        self._tail_len += len(piece)
        if self._tail_len > MAX_PENDING_BYTES:
            raise SSEOverflow(f"a line of more than {MAX_PENDING_BYTES} bytes")


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, bytes]]:
    """(event, data) pairs from a stream of byte chunks, e.g. `response.content.iter_any()`."""
    parser = SSEParser()
    async for chunk in chunks:
        for item in parser.feed(chunk):
            yield item
