"""POST /v1/chat/completions: one request, from validated body to recorded response.

The request's events are gathered in a `RequestTrace` as it goes and committed to
the ledger before the response's last byte leaves (for streams, before
`data: [DONE]`). If the ledger cannot take them, the client gets `ledger_unavailable`
instead of an unbilled answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import structlog
from quart import Response

from adapters.base import ChatStream, Completion, Usage
from adapters.catalog import ModelInfo
from adapters.errors import UpstreamError
from gateway.admission import admit
from gateway.attempts import OpenStream, first_answer, note_outcome
from gateway.auth import Principal
from gateway.breakers import Transition
from gateway.errors import TAXONOMY, GatewayError, error_envelope, is_retryable
from gateway.observability import RequestSpans
from gateway.openai_format import DONE_FRAME, ChunkFramer, completion_body, error_frame
from gateway.routing import Route, prompt_chars, route
from gateway.services import Services
from gateway.validation import parse_json_object, validate_chat
from ledger.accounts import money_text
from ledger.events import Request
from ledger.ids import format_request_id, new_request_id
from ledger.trace import RequestTrace
from ledger.writer import LedgerUnavailable

log = structlog.get_logger("gateway.request")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def estimate_tokens(chars: int) -> int:
    """Tokens from characters when a provider gave no count (about 4 chars a token)."""
    return math.ceil(chars / 4)


@dataclass(slots=True)
class StreamOutcome:
    chunks: int = 0
    bytes: int = 0
    output_chars: int = 0
    ttft_ms: float | None = None
    error: UpstreamError | None = None
    client_disconnected: bool = False

    def framed(self, framer: ChunkFramer, choice: dict[str, Any]) -> bytes:
        frame = framer.choice(choice)
        self.chunks += 1
        self.bytes += len(frame)
        self.output_chars += _delta_chars(choice)
        return frame


@dataclass(slots=True)
class ChatCall:
    """The state of one chat request as it moves through the gateway."""

    services: Services
    principal: Principal
    started: float = field(default_factory=time.perf_counter)
    started_monotonic: float = field(default_factory=time.monotonic)
    strategy: str = "explicit"
    request_uuid: Any = field(default_factory=new_request_id)
    trace: RequestTrace = field(init=False)
    request_id: str = field(init=False)
    spans: RequestSpans | None = None
    model_name: str = ""
    stream: bool = False
    attempts: int = 0
    provider: str | None = None
    served_model: str | None = None
    usage: Usage | None = None
    endpoint: str = "chat.completions"
    admission: Any = None  # gateway.admission.Admission, once admitted
    in_flight: ModelInfo | None = None  # the model of the attempt awaiting its answer
    handed_over: bool = False  # the trace is the ledger writer's: nothing more is added

    def __post_init__(self) -> None:
        self.trace = RequestTrace(self.request_uuid)
        self.request_id = format_request_id(self.request_uuid)

    # -- the request ---------------------------------------------------------

    def received(self, raw: bytes, body: dict[str, Any] | None) -> None:
        model = body.get("model") if body else None
        self.model_name = self._recordable_model(model)
        self.stream = bool(body and body.get("stream") is True)
        messages = body.get("messages") if body else None
        self.trace.add(
            Request.Received,
            tenant=self.principal.tenant,
            key_id=self.principal.key_id,
            endpoint=self.endpoint,
            model=self.model_name,
            stream=self.stream,
            body_bytes=len(raw),
            body_sha256=hashlib.sha256(raw).hexdigest(),
            messages=len(messages) if isinstance(messages, list) else 0,
        )
        self.spans = RequestSpans(self.services.tracer, self.request_id, self.model_name, self.stream)

    def _recordable_model(self, model: Any) -> str:
        """The requested model as logs and the ledger may keep it: a catalog name or
        "auto" as given; anything else is the client's free text (it could be a pasted
        prompt or secret), kept only as a hash."""
        if not isinstance(model, str):
            return ""
        if model == "auto" or self.services.catalog.find(model) is not None:
            return model
        return "unknown:" + hashlib.sha256(model.encode()).hexdigest()[:16]

    def routed(self, chosen: Route) -> None:
        self.trace.add(
            Request.Routed,
            strategy=chosen.strategy,
            candidates=chosen.candidates,
            chain=[m.id for m in chosen.chain],
            reason=chosen.reason,
            options=chosen.options,
        )

    # -- attempts (the loop itself is gateway/attempts.py) -------------------

    def attempt_started(self, model: ModelInfo) -> None:
        self.attempts += 1
        self.in_flight = model
        self.trace.add(Request.AttemptStarted, attempt=self.attempts, provider=model.provider, model=model.id)
        assert self.spans is not None
        self.spans.attempt_started(self.attempts, model.provider, model.upstream)

    def attempt_failed(self, model: ModelInfo, error: UpstreamError, latency_ms: float) -> None:
        self.in_flight = None
        self.trace.add(
            Request.AttemptFailed,
            attempt=self.attempts,
            provider=model.provider,
            model=model.id,
            error_code=error.code,
            status=error.status,
            retryable=is_retryable(error.code),
            latency_ms=latency_ms,
            # Our own words only: a provider's message may quote the prompt.
            message=TAXONOMY.get(error.code, TAXONOMY["upstream_error"]).meaning,
        )
        assert self.spans is not None
        self.spans.attempt_ended(error.code)

    def retry_scheduled(self, model: ModelInfo, delay_s: float, retry_after: float | None) -> None:
        self.trace.add(Request.RetryScheduled, model=model.id, delay_ms=round(delay_s * 1000, 3),
                       retry_after_ms=None if retry_after is None else round(retry_after * 1000, 3))

    def circuit_changed(self, transition: Transition) -> None:
        if transition.to == "open":
            self.trace.add(Request.CircuitOpened, model=transition.model, reason=transition.reason,
                           open_until=transition.open_until or 0.0)
        else:
            self.trace.add(Request.CircuitClosed, model=transition.model, reason=transition.reason)
        log.warning("circuit_" + transition.to, model=transition.model, reason=transition.reason,
                    request_id=self.request_id)
        self.services.shared.publish_circuit(transition)

    def attempt_succeeded(self, model: ModelInfo, ttft_ms: float | None, latency_ms: float) -> None:
        self.in_flight = None
        self.trace.add(
            Request.AttemptSucceeded,
            attempt=self.attempts,
            provider=model.provider,
            model=model.id,
            status=200,
            ttft_ms=ttft_ms,
            latency_ms=latency_ms,
        )
        assert self.spans is not None
        self.spans.attempt_ended()

    # -- metering and the end of the request ---------------------------------

    def metered(self, model: ModelInfo, usage: Usage, source: str) -> Decimal:
        # Priced by the price book in force when the request was admitted.
        at = self.admission.at if self.admission is not None else time.time() - (time.perf_counter() - self.started)
        cost, version = self.services.price_books.cost(  # images: the images endpoint, priced per image
            model.id, usage.input_tokens, usage.output_tokens, usage.cached_tokens, at, images=usage.images
        )
        self.trace.add(
            Request.UsageMetered,
            provider=model.provider,
            model=model.id,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            source=source,
            price_book=version,
            cost=money_text(cost),
            images=usage.images,
        )
        self.usage = usage
        if self.admission is not None:
            self.admission.metered(cost, usage.input_tokens + usage.output_tokens, self.trace.entries[-1][1])
        return cost

    def completed(self) -> None:
        self.trace.add(Request.Completed, status=200, latency_ms=_ms(self.started))

    def failed(self, error: GatewayError) -> None:
        self.trace.add(
            Request.Failed,
            status=error.status,
            error_code=error.code,
            message=TAXONOMY[error.code].meaning,
            latency_ms=_ms(self.started),
        )

    async def commit(self) -> None:
        self.handed_over = True
        try:
            await self.services.writer.commit(self.trace)
        except LedgerUnavailable:
            raise GatewayError(
                "ledger_unavailable", "The request could not be recorded, so it was not served; retry later."
            ) from None

    def commit_later(self) -> None:
        """Hand the events to the writer without waiting (nothing was billed, or the
        client is gone)."""
        self.handed_over = True
        self.services.writer.commit_later(self.trace)

    def abandoned(self, raw: bytes, body: dict[str, Any] | None, prompt_tokens: int | None = None) -> None:
        """The client left before its answer (the handler is being cancelled): record
        the request as far as it went, ended by a 499. An attempt awaiting its answer
        is left unfinished (its outcome is unknown) and, as the provider had the prompt,
        the prompt is billed, estimated, as a stream cut short is (`prompt_tokens`: the
        endpoint's own estimate, else the chat messages'). Handed to the writer without
        waiting; nothing is added to a trace already handed over."""
        if self.handed_over:
            return
        if not self.trace.entries:
            self.received(raw, body)
        model, self.in_flight = self.in_flight, None
        if model is not None:
            self.services.breakers.release(model.id)
            tokens = _estimate_prompt(body or {}) if prompt_tokens is None else prompt_tokens
            self.metered(model, Usage(input_tokens=tokens, output_tokens=0), "estimated")
        self.trace.add(Request.Failed, status=499, error_code="client_disconnected",
                       message="The client closed the connection before the answer.", latency_ms=_ms(self.started))
        self.commit_later()
        self.logged(499, "client_disconnected")

    def logged(self, status: int, error_code: str | None = None) -> None:
        usage = self.usage
        log.info(
            "request",
            request_id=self.request_id,
            tenant=self.principal.tenant,
            key_id=self.principal.key_id,
            model=self.model_name,
            provider=self.provider,
            served_model=self.served_model,
            stream=self.stream,
            status=status,
            error_code=error_code,
            attempts=self.attempts,
            latency_ms=_ms(self.started),
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
        )
        if self.spans is not None:
            self.spans.finish(
                status,
                **{
                    "gen_ai.system": self.provider,
                    "gen_ai.response.model": self.served_model,
                    "gen_ai.usage.input_tokens": usage.input_tokens if usage else None,
                    "gen_ai.usage.output_tokens": usage.output_tokens if usage else None,
                    "error.type": error_code,
                },
            )

    def headers(self, model: ModelInfo | None = None, cost: Decimal | None = None) -> dict[str, str]:
        headers = {"x-request-id": self.request_id, "x-2api-attempts": str(self.attempts)}
        if self.admission is not None:
            headers.update(self.admission.headers)  # x-ratelimit-*
        if model is not None:
            headers["x-2api-provider"] = model.provider
            headers["x-2api-model"] = model.id
            headers["x-2api-routing-strategy"] = self.strategy
        if cost is not None:
            headers["x-2api-cost"] = money_text(cost)  # fixed-point: "0.000000020", never "2E-8"
        return headers


async def chat_completions(
    services: Services, principal: Principal, raw: bytes, endpoint: str = "chat.completions"
) -> Response:
    """`endpoint` names the public API the request came through, for the ledger's
    Received event (`messages` when gateway/anthropic_api.py translated it)."""
    call = ChatCall(services, principal, endpoint=endpoint)
    body: dict[str, Any] | None = None
    try:
        body = parse_json_object(raw)
        call.received(raw, body)
        validate_chat(body)
        await admit(services, call, body)  # status, models, rate limits, balance
        chosen = route(services, body, call.started_monotonic, call.admission.routing)  # + key/tenant defaults
        call.routed(chosen)
        answer, model = await first_answer(
            services, call, chosen.chain, body, chosen.policy, chosen.deadline, call.stream
        )
        call.provider, call.served_model, call.strategy = model.provider, model.id, chosen.strategy
        if call.stream:
            return _stream_response(call, model, answer, body)
        return await _completion_response(call, model, answer)
    except asyncio.CancelledError:
        call.abandoned(raw, body)
        raise
    except GatewayError as error:
        if not call.trace.entries:
            call.received(raw, body)
        call.failed(error)
        with suppress(GatewayError):  # the ledger being down must not mask the error
            await call.commit()
        call.logged(error.status, error.code)
        return error_response(error, call.headers())


async def _completion_response(call: ChatCall, model: ModelInfo, completion: Completion) -> Response:
    latency_ms = _ms(call.started)
    call.attempt_succeeded(model, ttft_ms=None, latency_ms=latency_ms)
    call.services.latency.observe_total(model.id, latency_ms, completion.usage.output_tokens)
    cost = call.metered(model, completion.usage, "provider")
    call.completed()
    await call.commit()
    body = completion_body("chatcmpl-" + call.request_uuid.hex, int(time.time()), model.id, completion)
    call.logged(200)
    return Response(orjson.dumps(body), 200, call.headers(model, cost), content_type="application/json")


def _stream_response(call: ChatCall, model: ModelInfo, opened: OpenStream, body: dict[str, Any]) -> Response:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    framer = ChunkFramer("chatcmpl-" + call.request_uuid.hex, int(time.time()), model.id)
    response = Response(
        _relay(call, model, opened, framer, include_usage, body),
        200,
        {**call.headers(model), **SSE_HEADERS},
        content_type="text/event-stream",
    )
    response.timeout = None  # streams last as long as the provider takes
    return response


async def _relay(
    call: ChatCall,
    model: ModelInfo,
    opened: OpenStream,
    framer: ChunkFramer,
    include_usage: bool,
    body: dict[str, Any],
) -> AsyncIterator[bytes]:
    stream = opened.stream
    outcome = StreamOutcome()
    try:
        if opened.first is not None:
            outcome.ttft_ms = round((opened.first_at - call.started) * 1000, 3)
            yield _with_parsed(outcome, framer, opened.first, stream)
            async for choice in stream:
                yield _with_parsed(outcome, framer, choice, stream)
    except UpstreamError as error:
        # After the first byte there is no retry or fallback: end the stream cleanly.
        outcome.error = error
    except BaseException:
        # The client went away (the response task is cancelled or the generator
        # closed). Record what was served without waiting, then let it unwind.
        outcome.client_disconnected = True
        _finish_stream(call, model, stream, outcome, body)
        call.commit_later()
        call.logged(499, "client_disconnected")
        asyncio.get_running_loop().create_task(stream.aclose())
        raise
    await stream.aclose()
    error = _finish_stream(call, model, stream, outcome, body)
    if error is None and include_usage and call.usage is not None:
        yield framer.usage(call.usage)
    try:
        await call.commit()
    except GatewayError as ledger_error:
        error = error or ledger_error
    if error is not None:
        call.logged(error.status, error.code)
        yield error_frame(error.envelope())
        return
    call.logged(200)
    yield DONE_FRAME


def _with_parsed(outcome: StreamOutcome, framer: ChunkFramer, choice: dict[str, Any], stream: ChatStream) -> bytes:
    """The choice's frame and those of the choices parsed from the same upstream read:
    one downstream write per upstream read (a relay's CPU goes mostly per write)."""
    more = stream.parsed()
    if not more:
        return outcome.framed(framer, choice)
    return b"".join([outcome.framed(framer, choice), *(outcome.framed(framer, c) for c in more)])


def _finish_stream(
    call: ChatCall, model: ModelInfo, stream: ChatStream, outcome: StreamOutcome, body: dict[str, Any]
) -> GatewayError | None:
    """Record how the stream ended and meter it; the error to show, if any."""
    latency_ms = _ms(call.started)
    if outcome.error is not None:
        call.attempt_failed(model, outcome.error, latency_ms)
        note_outcome(call.services, call, model, ok=False)
    else:
        call.attempt_succeeded(model, outcome.ttft_ms, latency_ms)
        note_outcome(call.services, call, model, ok=True)
        if outcome.ttft_ms is not None and stream.usage is not None and not outcome.client_disconnected:
            generation_s = max((latency_ms - outcome.ttft_ms) / 1000, 1e-3)
            call.services.latency.observe(model.id, outcome.ttft_ms, stream.usage.output_tokens / generation_s)
    call.trace.add(
        Request.StreamSummarized,
        chunks=outcome.chunks,
        bytes=outcome.bytes,
        ttft_ms=outcome.ttft_ms,
        duration_ms=latency_ms,
        finish_reason=stream.finish_reason,
        client_disconnected=outcome.client_disconnected,
    )
    if stream.usage is not None and outcome.error is None and not outcome.client_disconnected:
        call.metered(model, stream.usage, "provider")
    else:
        # Cut short: bill what was produced, estimated, and say so.
        reported = stream.usage
        input_tokens = reported.input_tokens if reported and reported.input_tokens else _estimate_prompt(body)
        estimated = Usage(
            input_tokens=input_tokens,
            output_tokens=max(reported.output_tokens if reported else 0, estimate_tokens(outcome.output_chars)),
            cached_tokens=reported.cached_tokens if reported else 0,
        )
        call.metered(model, estimated, "estimated")
    if outcome.error is not None:
        error = GatewayError(outcome.error.code, f"The provider stream failed: {outcome.error.message}")
        call.failed(error)
        return error
    if outcome.client_disconnected:
        call.trace.add(Request.Failed, status=499, error_code="client_disconnected",
                       message="The client closed the connection mid-stream.", latency_ms=latency_ms)
        return None
    call.completed()
    return None


def _delta_chars(choice: dict[str, Any]) -> int:
    delta = choice.get("delta")
    if not delta:
        return 0
    chars = len(delta.get("content") or "")
    for tool_call in delta.get("tool_calls") or ():
        chars += len((tool_call.get("function") or {}).get("arguments") or "")
    return chars


def _estimate_prompt(body: dict[str, Any]) -> int:
    return estimate_tokens(prompt_chars(body))


def error_response(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    merged = {**(headers or {}), **(error.headers or {})}
    return Response(error.body(), error.status, merged, content_type="application/json")


def envelope_response(code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    error = GatewayError(code, message)
    return Response(orjson.dumps(error_envelope(code, message)), error.status, headers or {},
                    content_type="application/json")
