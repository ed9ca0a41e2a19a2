"""Translation helpers shared by the provider adapters (pure: no I/O).

Reading the OpenAI-shaped request (text of a content value, output-token limit, stop
sequences, data URLs, tool-call arguments), the OpenAI choice dicts a stream yields,
and the small pieces of error handling every provider needs (the error a body we
cannot read becomes, scrubbing key-like strings out of provider messages).
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import sys
from array import array
from collections.abc import Awaitable
from typing import Any

import orjson

from .errors import UpstreamError, classify_status
from .params import unsupported_parameter

# Request fields that steer the gateway and must never reach a provider.
GATEWAY_ONLY_FIELDS = frozenset({"routing", "models"})


def role_chunk() -> dict[str, Any]:
    """The first choice dict of every stream, as OpenAI sends it."""
    return {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}


def content_chunk(text: str) -> dict[str, Any]:
    return {"index": 0, "delta": {"content": text}, "finish_reason": None}


def finish_chunk(finish_reason: str) -> dict[str, Any]:
    return {"index": 0, "delta": {}, "finish_reason": finish_reason}


def tool_call_chunk(call: dict[str, Any]) -> dict[str, Any]:
    return {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}


# --------------------------------------------------------------------------- request


def text_of(content: Any) -> str:
    """The text of a message `content`: a string, or the text parts of a part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text") or "" for part in content if part.get("type") in ("text", "input_text")
    )


def max_output_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    return value if value is not None else body.get("max_tokens")


def stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop] if stop else None
    return [s for s in stop if s] or None


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 payload) of a `data:<type>;base64,<payload>` URL, else None."""
    if not url.startswith("data:"):
        return None
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    return header[5:-7] or "application/octet-stream", payload


def image_url(part: dict[str, Any], provider: str) -> tuple[str, tuple[str, str] | None]:
    """(url, (media type, base64 data) if it is a data URL) of an `image_url` part.

    Only `https:`/`http:` URLs and base64 `data:` URLs can be handed on; anything else
    is the client's error. `detail` has no counterpart outside OpenAI and is not sent.
    """
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not url or not isinstance(url, str):
        raise invalid("image_url part without a url")
    if url.startswith("data:"):
        data = parse_data_url(url)
        if data is None:
            raise invalid(f"image data URLs must be base64 ('data:<type>;base64,...') for {provider}")
        return url, data
    if not url.startswith(("https://", "http://")):
        raise invalid(f"image_url must be an https:// or a base64 data: URL for {provider}")
    return url, None


def check_parameters(provider: str, body: dict[str, Any]) -> None:
    """Raise the 400 for the first request parameter `provider` cannot honour."""
    problem = unsupported_parameter(provider, body)
    if problem is not None:
        raise invalid(problem[1])


def tool_arguments(arguments: Any, where: str) -> dict[str, Any]:
    """The decoded `function.arguments` of an assistant tool call (a JSON object string)."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise invalid(f"{where}.function.arguments is not valid JSON") from None
    if not isinstance(value, dict):
        raise invalid(f"{where}.function.arguments must be a JSON object")
    return value


def encode_embedding(values: list[float], encoding_format: str | None) -> list[float] | str:
    """An embedding as OpenAI answers it: floats, or base64 of little-endian float32s."""
    if encoding_format != "base64":
        return values
    packed = array("f", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def estimate_tokens(texts: list[str]) -> int:
    """Tokens of texts a provider did not count for us (about 4 characters a token)."""
    return sum(math.ceil(len(text) / 4) for text in texts)


async def gather_all(calls: list[Awaitable[Any]]) -> list[Any]:
    """Await calls concurrently; the first failure is raised once all have ended."""
    if len(calls) == 1:
        return [await calls[0]]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def dumps_str(value: Any) -> str:
    return orjson.dumps(value).decode()


def invalid(message: str) -> UpstreamError:
    """A request we cannot translate for this provider (the client's fault, not retryable)."""
    return UpstreamError("invalid_request", message)


# ---------------------------------------------------------------------------- errors


def malformed(provider: str) -> UpstreamError:
    return UpstreamError("upstream_error", f"malformed response from {provider}")


def loads(data: bytes, provider: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise malformed(provider) from None


_KEYLIKE = re.compile(
    r"(?:\bsk-[A-Za-z0-9_\-*.]{3,}|\bAIza[0-9A-Za-z_\-]{8,}|(?i:bearer)\s+[^\s\"']+)"
)
MAX_MESSAGE_CHARS = 2000


def scrub(message: str, api_key: str | None = None) -> str:
    """A provider's error message made safe to show: no key, no key fragment, bounded."""
    if api_key and api_key in message:
        message = message.replace(api_key, "[redacted]")
    message = _KEYLIKE.sub("[redacted]", message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return message


def classify(
    status: int, message: str, retry_after: float | None, provider: str
) -> UpstreamError:
    return classify_status(status, message or f"{provider} returned HTTP {status}", retry_after)


def error_object(body: bytes) -> Any:
    """The parsed JSON of an error body, or None when it is not JSON."""
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
