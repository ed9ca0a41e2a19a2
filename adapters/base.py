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

Providers with embedding or image models also implement `embed()` (OpenAI's
`/v1/embeddings` body in, an `Embeddings` out) and `generate_images()` (OpenAI's
`/v1/images/generations` body in, `GeneratedImages` out); the gateway calls them only
for catalog models with the `embeddings` / `images` capability.

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
    images: int = 0  # images generated (the images endpoint bills per image)


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
    logprobs: dict[str, Any] | None = None  # OpenAI `choices[0].logprobs`, when asked for
    # Choices 1..n-1 as whole OpenAI choice dicts (index, message, finish_reason,
    # logprobs), when the request asked for n > 1; the first choice is the fields above.
    more_choices: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class Embeddings:
    data: list[dict[str, Any]]  # OpenAI embedding objects: object, index, embedding
    usage: Usage  # input_tokens
    estimated: bool = False  # the provider reported no token count: usage is our estimate


@dataclass(slots=True)
class GeneratedImages:
    data: list[dict[str, Any]]  # OpenAI image objects: b64_json or url, revised_prompt?
    usage: Usage  # images, plus tokens where the provider bills them
    created: int = 0


class ChatStream(Protocol):
    usage: Usage | None  # None until the provider reported it (or never, if cut)
    finish_reason: str | None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    def parsed(self) -> list[dict[str, Any]]:
        """Choices already at hand after the one just yielded (no I/O), taken out of
        the stream, so that a relay writes one upstream read as one downstream write."""

    async def aclose(self) -> None:
        """Release the upstream connection; safe to call more than once."""


class Adapter(Protocol):
    provider: ClassVar[str]

    async def complete(self, body: dict[str, Any], target: Target) -> Completion: ...

    async def stream(self, body: dict[str, Any], target: Target) -> ChatStream: ...


class EmbeddingAdapter(Protocol):
    async def embed(self, body: dict[str, Any], target: Target) -> Embeddings: ...


class ImageAdapter(Protocol):
    async def generate_images(self, body: dict[str, Any], target: Target) -> GeneratedImages: ...
