"""OpenAI response shapes: chat.completion bodies and chat.completion.chunk frames."""

from __future__ import annotations

from typing import Any

import orjson

from adapters.base import Completion, Usage

DONE_FRAME = b"data: [DONE]\n\n"


def usage_body(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def completion_body(completion_id: str, created: int, model: str, completion: Completion) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": completion.message,
                "finish_reason": completion.finish_reason,
                "logprobs": completion.logprobs,
            },
            *(completion.more_choices or ()),
        ],
        "usage": usage_body(completion.usage),
    }


class ChunkFramer:
    """Frames adapter choice dicts as SSE `chat.completion.chunk` events.

    The envelope is the same for every chunk of a stream, so it is encoded once and
    each chunk costs one orjson call on its choice.
    """

    __slots__ = ("_head",)

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        envelope = orjson.dumps(
            {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        )
        self._head = b"data: " + envelope[:-1] + b',"choices":['

    def choice(self, choice: dict[str, Any]) -> bytes:
        return self._head + orjson.dumps(choice) + b"]}\n\n"

    def usage(self, usage: Usage) -> bytes:
        return self._head + b'],"usage":' + orjson.dumps(usage_body(usage)) + b"}\n\n"


def error_frame(envelope: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(envelope) + b"\n\n"
