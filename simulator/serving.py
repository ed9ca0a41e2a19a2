"""The request flow every simulated provider shares: read, log, authenticate, parse,
apply a fault, meter, pace, answer (plain or SSE).

A provider module supplies a `Wire`: how its requests are authenticated and parsed
into a provider-neutral `Conversation`, and how replies, streams and errors look on its
wire. Everything stateful (faults, latency, cache) is applied here, once, so the three
providers behave alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

import orjson
from aiohttp import web

from .control import STATE, Fault, Latency
from .text import Reply, count_tokens, make_reply
from .tools import ToolChoice, ToolSpec, fragments, plan_calls, structured_text

JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_HANG_POLL_S = 0.05
AWKWARD_WRITE_BYTES = 13


@dataclass(slots=True)
class Conversation:
    """What the simulator needs from a generation request, whatever the provider."""

    model: str
    prompt: str  # the last user text: it seeds the reply
    input_tokens: int  # every prompt token, cached ones included
    stream: bool = False
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    system_text: str = ""  # the cacheable prefix
    system_tokens: int = 0
    cache_marked: bool = False  # the request asked for caching (Anthropic cache_control)
    options: dict[str, Any] = field(default_factory=dict)  # provider-specific flags
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    after_tool_result: bool = False  # the last turn is a tool result
    call_id_prefix: str = ""  # the provider's tool call id style ("call_", "toolu_"; Gemini: none)
    json_mode: bool = False  # structured output asked for
    json_schema: Any = None  # its schema, if any
    n: int = 1  # choices asked for
    logprobs: int | None = None  # None: not asked for; else how many top alternatives


@dataclass(slots=True)
class Metered:
    input_tokens: int  # all prompt tokens, cached ones included
    output_tokens: int
    cached_tokens: int  # read from the prompt cache
    cache_write_tokens: int  # written to it (reported by Anthropic only, when asked)


@dataclass(slots=True)
class StreamPlan:
    head: list[bytes]  # framing events before the first token (e.g. message_start)
    tokens: list[bytes]  # one event per reply piece: these are paced
    tail: list[bytes]  # finish, usage, terminator
    awkward: bool = False  # write the body in small pieces cut at odd byte offsets


class Wire(Protocol):
    name: ClassVar[str]

    def authenticate(self, request: web.Request) -> web.Response | None: ...

    def parse(self, request: web.Request, body: dict[str, Any], counting: bool = False) -> Conversation | web.Response:
        """`counting`: for a token-count endpoint, which needs no generation parameters."""

    def error(self, status: int, message: str | None = None, retry_after: float | None = None) -> web.Response: ...

    def plain(self, conv: Conversation, reply: Reply, usage: Metered) -> web.Response: ...

    def stream(self, conv: Conversation, reply: Reply, usage: Metered) -> StreamPlan: ...

    def stream_error(self, status: int, message: str | None) -> bytes: ...

    def malformed_event(self) -> bytes: ...


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers or JSON_HEADERS)


def retry_after_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


async def admit(wire: Wire, request: web.Request, counting: bool = False, parse: Any = None) -> Any:
    """Read, log, authenticate and parse a request: its Conversation (or what `parse`
    makes of the body), or the error to answer."""
    state = request.app[STATE]
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        state.record(wire.name, request, None)
        return wire.authenticate(request) or wire.error(400, "invalid_json")
    state.record(wire.name, request, body)
    denied = wire.authenticate(request)
    if denied is not None:
        return denied
    if not isinstance(body, dict):
        return wire.error(400, "the request body must be a JSON object")
    if parse is not None:
        return parse(request, body)
    return wire.parse(request, body, counting)


async def handle_unary(wire: Wire, request: web.Request, parse: Any, answer: Any) -> web.StreamResponse:
    """A request answered in one JSON body (embeddings, image generation): `parse`
    (request, body) gives (model, parsed) or the error response; `answer` (request,
    parsed, filtered) the response. Faults, latency and the request log apply as to chat."""
    parsed = await admit(wire, request, parse=parse)
    if isinstance(parsed, web.StreamResponse):
        return parsed
    model, payload = parsed
    state = request.app[STATE]
    fault = state.match_fault(wire.name, model, False) if state.faults else None
    if fault is not None and fault.mode != "content_filter":
        if fault.mode == "status":
            return wire.error(fault.status or 500, fault.message, fault.retry_after)
        if fault.mode == "timeout":
            return await _hang(request)
        if fault.mode == "disconnect":
            return _disconnect(request)
        return web.Response(body=b'{"data": [{"embedding": ', headers=JSON_HEADERS)  # malformed
    latency = state.latency_for(wire.name, model) if state.latency else None
    if latency is not None and latency.ttft_s:
        await asyncio.sleep(latency.ttft_s)
    return answer(request, payload, fault is not None)


def admit_get(wire: Wire, request: web.Request) -> web.Response | None:
    """Log and authenticate a bodiless request (a model list): the error to answer, if any."""
    request.app[STATE].record(wire.name, request, None)
    return wire.authenticate(request)


async def handle(wire: Wire, request: web.Request) -> web.StreamResponse:
    """A generation request, from the first byte to the last."""
    conv = await admit(wire, request)
    if not isinstance(conv, Conversation):
        return conv
    state = request.app[STATE]

    fault = state.match_fault(wire.name, conv.model, conv.stream) if state.faults else None
    if fault is not None and fault.mode != "content_filter" and not (conv.stream and fault.after_chunks):
        if fault.mode == "status":
            return wire.error(fault.status or 500, fault.message, fault.retry_after)
        if fault.mode == "timeout":
            return await _hang(request)
        if fault.mode == "disconnect":
            return _disconnect(request)
        if not conv.stream:  # malformed
            return web.Response(body=b'{"id": "malformed", "choices": [{"message": ', headers=JSON_HEADERS)

    cached, written = state.prompt_cache(wire.name, conv.model, conv.system_text, conv.system_tokens)
    reply = compose_reply(conv)
    if fault is not None and fault.mode == "content_filter":
        reply, fault = filtered(reply), None
    usage = Metered(conv.input_tokens, reply.total_output_tokens, cached, written)
    latency = state.latency_for(wire.name, conv.model) if state.latency else None
    if conv.stream:
        return await _stream(wire, request, wire.stream(conv, reply, usage), latency, fault)
    if latency is not None:
        await asyncio.sleep(latency.ttft_s + reply.output_tokens * latency.token_s)
    return wire.plain(conv, reply, usage)


def compose_reply(conv: Conversation) -> Reply:
    """What the model answers: tool calls, structured output, or text (n choices), after
    its thinking when extended thinking was asked for (`options["thinking"]`)."""
    reply = _compose(conv)
    if conv.options.get("thinking"):
        thinking = f"The question is: {conv.prompt[:80]}. A short, plain answer will do."
        reply = replace(reply, thinking=thinking, output_tokens=reply.output_tokens + count_tokens(thinking))
    return reply


def _compose(conv: Conversation) -> Reply:
    reply = make_reply(conv.model, conv.prompt, conv.max_tokens, conv.stop)
    calls = plan_calls(conv.model, conv.prompt, conv.tools, conv.tool_choice, conv.after_tool_result,
                       conv.call_id_prefix)
    if calls:
        return _tool_reply(calls, conv.max_tokens)
    if conv.json_mode:
        return _limited(fragments(structured_text(conv.model, conv.prompt, conv.json_schema, reply.text)),
                        conv.max_tokens)
    if conv.n > 1:
        more = tuple(make_reply(conv.model, f"{conv.prompt}\x00choice {i}", conv.max_tokens, conv.stop)
                     for i in range(1, conv.n))
        return Reply(reply.pieces, reply.text, reply.output_tokens, reply.finish, reply.stop_sequence, more=more)
    return reply


def _limited(pieces: tuple[str, ...], max_tokens: int | None) -> Reply:
    """A reply of these pieces, cut where the output-token limit is reached."""
    text = "".join(pieces)
    tokens = count_tokens(text)
    if max_tokens is None or tokens <= max_tokens:
        return Reply(pieces, text, tokens, "stop")
    kept: list[str] = []
    for piece in pieces:
        if count_tokens("".join(kept) + piece) > max_tokens:
            break
        kept.append(piece)
    text = "".join(kept)
    return Reply(tuple(kept), text, count_tokens(text), "length")


def _tool_reply(calls: tuple[Any, ...], max_tokens: int | None) -> Reply:
    total = sum(call.tokens for call in calls)
    if max_tokens is None or total <= max_tokens:
        return Reply((), "", total, "tool_calls", tool_calls=calls)
    # Cut inside the arguments, as a model hitting its limit mid-call is.
    kept = []
    budget = max_tokens
    for call in calls:
        if call.tokens <= budget:
            kept.append(call)
            budget -= call.tokens
            continue
        pieces: list[str] = []
        for piece in call.fragments:
            if count_tokens(call.name + "".join(pieces) + piece) > budget:
                break
            pieces.append(piece)
        partial = "".join(pieces)
        kept.append(type(call)(call.id, call.name, None, partial, tuple(pieces), budget))
        break
    return Reply((), "", max_tokens, "length", tool_calls=tuple(kept))


def filtered(reply: Reply) -> Reply:
    """The reply a provider's safety system stops after a few pieces."""
    pieces = reply.pieces[:3]
    text = "".join(pieces)
    return Reply(pieces, text, count_tokens(text), "content_filter")


async def _stream(
    wire: Wire, request: web.Request, plan: StreamPlan, latency: Latency | None, fault: Fault | None
) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    # A client leaving mid-stream (a gateway cancelling, a benchmark ending) has no one
    # to answer, and is no simulator error worth a traceback.
    with contextlib.suppress(ConnectionError):
        await _send_events(wire, request, response, plan, latency, fault)
    return response


async def _send_events(
    wire: Wire,
    request: web.Request,
    response: web.StreamResponse,
    plan: StreamPlan,
    latency: Latency | None,
    fault: Fault | None,
) -> None:
    if latency is not None and latency.ttft_s:
        await asyncio.sleep(latency.ttft_s)
    await response.prepare(request)
    events = [*plan.head, *plan.tokens, *plan.tail]
    if plan.awkward and fault is None and latency is None:
        # Tool arguments and structured output: the body goes out in small writes cut at
        # odd byte offsets (inside events, inside UTF-8 sequences), as a network may cut it.
        body = b"".join(events)
        for start in range(0, len(body), AWKWARD_WRITE_BYTES):
            await response.write(body[start : start + AWKWARD_WRITE_BYTES])
        await response.write_eof()
        return
    if fault is None and latency is None:
        # Nothing to pace or break: one write (and one chunked-encoding frame) instead of
        # one per event. Clients still parse the same events; only TCP segmentation differs.
        await response.write_eof(b"".join(events))
        return
    first_token = len(plan.head)
    last_token = first_token + len(plan.tokens)
    pause = latency.token_s if latency is not None else 0.0
    fault_at = fault.after_chunks if fault is not None else -1
    for index, event in enumerate(events):
        if index == fault_at and fault is not None:
            await _fault_mid_stream(wire, request, response, fault)
            return
        if pause and first_token < index < last_token:
            await asyncio.sleep(pause)
        await response.write(event)
    await response.write_eof()


async def _fault_mid_stream(wire: Wire, request: web.Request, response: web.StreamResponse, fault: Fault) -> None:
    if fault.mode == "status":
        await response.write(wire.stream_error(fault.status or 500, fault.message))
    elif fault.mode == "malformed":
        await response.write(wire.malformed_event())
    elif fault.mode == "timeout":
        await _hang(request)
        return
    else:  # disconnect: what was written is flushed, then the socket closes mid-body
        _disconnect(request)
        return
    await response.write_eof()


async def _hang(request: web.Request) -> web.Response:
    """Hold the request open, answering nothing, until the client (or the server) gives up.

    aiohttp does not cancel handlers when the client leaves, so watch the transport (and
    the simulator's own shutdown, so a stop is not held up by these requests).
    """
    state = request.app[STATE]
    while (transport := request.transport) is not None and not transport.is_closing() and not state.stopping:
        await asyncio.sleep(_HANG_POLL_S)
    return web.Response(status=504)  # never reaches anyone: the connection is gone


def _disconnect(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.close()
    # aiohttp fails to write this to the closed transport and drops it quietly.
    return web.Response(status=500)
