"""The attempt loop: retry, back off, fall back, within one deadline.

For each model of the route's chain, in order: skip it if its circuit is open; call
it; on a retryable failure retry the same model (exponential backoff with full jitter,
or the provider's `retry-after` when it is within the cap), then fall back to the next
model. Everything is bounded by the request's deadline and its attempt budget. A
stream counts as answered once the provider accepted it: after that nothing is
retried (see gateway/chat.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.base import Adapter, ChatStream, Target
from adapters.catalog import ModelInfo
from adapters.errors import UpstreamError
from gateway.breakers import Transition
from gateway.errors import GatewayError, is_retryable
from gateway.services import Services

# After these a different model may do better, though the same one will not.
FALLBACK_ONLY = frozenset({"upstream_auth_error", "model_not_found", "context_length_exceeded"})
MIN_ATTEMPT_S = 0.05  # no attempt is started with less time than this left


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    retries_per_model: int = 1
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 2.0
    retry_after_cap_s: float = 5.0

    def backoff(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `retry` (1-based); None: don't retry
        this model (the provider asks for longer than we will wait)."""
        if retry_after is not None:
            return retry_after if retry_after <= self.retry_after_cap_s else None
        return random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** (retry - 1)))


class AttemptRecorder(Protocol):
    def attempt_started(self, model: ModelInfo) -> None: ...

    def attempt_failed(self, model: ModelInfo, error: UpstreamError, latency_ms: float) -> None: ...

    def retry_scheduled(self, model: ModelInfo, delay_s: float, retry_after: float | None) -> None: ...

    def circuit_changed(self, transition: Transition) -> None: ...


@dataclass(slots=True)
class OpenStream:
    """A stream the provider accepted, with its first chunk already read: a stream
    that fails before its first chunk is an ordinary failed attempt, retried or
    fallen back from, since nothing has reached the client yet."""

    stream: ChatStream
    first: dict[str, Any] | None  # None: the provider ended the stream without a chunk
    first_at: float  # perf_counter when the first chunk arrived


@dataclass(slots=True)
class Failure:
    model: ModelInfo
    error: UpstreamError


async def first_answer(
    services: Services,
    recorder: AttemptRecorder,
    chain: list[ModelInfo],
    body: dict[str, Any],
    policy: RetryPolicy,
    deadline: float,
    stream: bool,
    call: Callable[[Any, dict[str, Any], Target], Awaitable[Any]] | None = None,
) -> tuple[Any, ModelInfo]:
    """The first model's answer (a Completion, or an open ChatStream). `call`
    (adapter, body, target) replaces the chat call, for the other endpoints
    (embeddings, images), which share the loop."""
    failures: list[Failure] = []
    attempts = 0
    for model in chain:
        retry = 0
        while attempts < policy.max_attempts:
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_S:
                raise _final_error(failures, deadline_passed=True)
            if not services.breakers.allow(model.id):
                failures.append(Failure(model, UpstreamError("provider_unavailable", "circuit open")))
                break
            attempts += 1
            recorder.attempt_started(model)
            adapter = services.adapters[model.provider]
            target = services.target(model, timeout_s=min(services.settings.upstream_timeout_s, remaining))
            started = time.perf_counter()
            try:
                if call is not None:
                    answer: Any = await call(adapter, body, target)
                elif stream:
                    answer = await _open_stream(adapter, body, target)
                else:
                    answer = await adapter.complete(body, target)
            except UpstreamError as error:
                recorder.attempt_failed(model, error, round((time.perf_counter() - started) * 1000, 3))
                failures.append(Failure(model, error))
                if is_retryable(error.code):
                    note_outcome(services, recorder, model, ok=False)
                else:
                    services.breakers.release(model.id)
                    if error.code not in FALLBACK_ONLY:
                        raise _final_error(failures) from None
                    break
                retry += 1
                wait = policy.backoff(retry, error.retry_after) if retry <= policy.retries_per_model else None
                if wait is None:
                    break
                wait = max(0.0, min(wait, deadline - time.monotonic() - MIN_ATTEMPT_S))
                recorder.retry_scheduled(model, wait, error.retry_after)
                await asyncio.sleep(wait)
                continue
            if not stream:
                note_outcome(services, recorder, model, ok=True)
            return answer, model
    raise _final_error(failures, deadline_passed=time.monotonic() >= deadline - MIN_ATTEMPT_S)


async def _open_stream(adapter: Adapter, body: dict[str, Any], target: Target) -> OpenStream:
    stream = await adapter.stream(body, target)
    try:
        first: dict[str, Any] | None = await stream.__aiter__().__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await stream.aclose()
        raise
    return OpenStream(stream, first, time.perf_counter())


def note_outcome(services: Services, recorder: AttemptRecorder, model: ModelInfo, ok: bool) -> None:
    transition = services.breakers.record(model.id, ok)
    if transition is not None:
        recorder.circuit_changed(transition)


def _final_error(failures: list[Failure], deadline_passed: bool = False) -> GatewayError:
    if not failures:
        return GatewayError("upstream_timeout", "The request's deadline passed before any attempt could start.")
    models = {f.model.id for f in failures}
    last = failures[-1].error
    if len(models) == 1 and not (deadline_passed and last.code != "upstream_timeout"):
        headers = {"retry-after": str(max(1, round(last.retry_after)))} if last.retry_after else None
        message = last.message if last.code != "provider_unavailable" else (
            f"{failures[-1].model.id} is unavailable: its circuit is open after repeated failures."
        )
        return GatewayError(last.code, message, headers=headers)
    reasons = "; ".join(f"{f.model.id}: {f.error.code}" + (f" ({f.error.status})" if f.error.status else "")
                        for f in failures)
    suffix = " The request's deadline passed." if deadline_passed else ""
    return GatewayError("all_candidates_failed", f"Every candidate failed: {reasons}.{suffix}")
