"""The contract between the gateway and a provider adapter.

The gateway hands an adapter the validated OpenAI-shaped request body (a plain dict,
never a model tree: per-request objects cost CPU on the hot path) and a `Target`
naming where the attempt goes. The adapter speaks the provider's wire protocol over
the shared aiohttp session and answers in OpenAI's shapes:

- `complete()` returns a `Completion`: the assistant message, finish reason, usage.
- `stream()` returns a `ChatStream` once the provider has answered with a success
  status, so failures before the first byte raise `UpstreamError` and can be retried
  by the gateway. Iterating the stream yields OpenAI `choices[0]` dicts
  (`{"index": 0, "delta": {...}, "finish_reason": ...}`); the gateway wraps them in
  `chat.completion.chunk` envelopes. After the iteration ends, `usage` and
  `finish_reason` hold what the provider reported.

Adapters never retry: the gateway's attempt loop owns retries and fallback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    # The part of input_tokens served from the provider's prompt cache.
    cached_tokens: int = 0


@dataclass(slots=True, frozen=True)
class Target:
    """Where one attempt goes."""

    provider: str
    model: str  # the provider's own model id, e.g. "claude-3-5-sonnet-20241022"
    base_url: str
    api_key: str
    timeout_s: float = 60.0


@dataclass(slots=True)
class Completion:
    message: dict[str, Any]  # OpenAI assistant message: role, content, tool_calls?
    finish_reason: str
    usage: Usage


class ChatStream(Protocol):
    usage: Usage | None  # None until the provider reported it (or never, if cut)
    finish_reason: str | None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None:
        """Release the upstream connection; safe to call more than once."""


class Adapter(Protocol):
    provider: ClassVar[str]

    async def complete(self, body: dict[str, Any], target: Target) -> Completion: ...

    async def stream(self, body: dict[str, Any], target: Target) -> ChatStream: ...
