"""OpenAI Chat Completions: the request is already in the provider's shape.

POST `{base_url}/chat/completions` (base_url includes `/v1`), `Authorization: Bearer`.
The body goes upstream with `model` replaced and gateway-only fields dropped; streams
always ask for the usage chunk (`stream_options.include_usage`), whether or not the
client did, so the gateway can meter every stream. Every chat parameter is OpenAI's
own, so all pass; a response's other choices (`n` > 1) and `logprobs` are kept.

Embeddings (`/embeddings`) and images (`/images/generations`) pass through the same
way. GPT Image models always answer base64 and refuse `response_format`: for them
the field is not sent, and a `url` request is answered with `data:` URLs.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import orjson

from .base import Completion, Embeddings, GeneratedImages, Target, Usage
from .common import GATEWAY_ONLY_FIELDS, classify, error_object, malformed, role_chunk
from .errors import UpstreamError, classify_status
from .http import WireAdapter

PROVIDER = "openai"

# OpenAI error `type` / `code` -> the HTTP status it stands for, for error objects
# that arrive without one (inside a 200 body or a stream).
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "tokens": 429,
    "requests": 429,
    "server_error": 500,
    "api_error": 500,
    "timeout": 504,
}


# --------------------------------------------------------------------------- request


def build_request(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    payload = {k: v for k, v in body.items() if k not in GATEWAY_ONLY_FIELDS}
    payload["model"] = model
    if stream:
        payload["stream"] = True
        options = body.get("stream_options")
        payload["stream_options"] = (
            {**options, "include_usage": True} if options else {"include_usage": True}
        )
    else:
        payload.pop("stream", None)
        payload.pop("stream_options", None)
    return payload


# -------------------------------------------------------------------------- response


def parse_usage(usage: dict[str, Any] | None) -> Usage:
    if not usage:
        return Usage()
    details = usage.get("prompt_tokens_details")
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cached_tokens=(details.get("cached_tokens") or 0) if details else 0,
    )


def parse_response(data: Any) -> Completion:
    if not isinstance(data, dict):
        raise malformed(PROVIDER)
    error = error_in(data)
    if error is not None:
        raise error
    choices = data.get("choices")
    if not choices:
        raise malformed(PROVIDER)
    choice = choices[0]
    message = choice["message"]
    if not isinstance(message, dict):
        raise malformed(PROVIDER)
    return Completion(
        message=message,
        finish_reason=choice.get("finish_reason") or "stop",
        usage=parse_usage(data.get("usage")),
        logprobs=choice.get("logprobs"),
        more_choices=choices[1:] or None,
    )


# ---------------------------------------------------------------------------- errors


def _refine(error: UpstreamError, code: Any) -> UpstreamError:
    if error.code == "invalid_request" and code == "context_length_exceeded":
        error.code = "context_length_exceeded"
    return error


def parse_error(status: int, body: bytes, retry_after: float | None) -> UpstreamError:
    """A non-2xx answer: `{"error": {"message", "type", "param", "code"}}`."""
    obj = error_object(body)
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or "")
        return _refine(classify(status, message, retry_after, PROVIDER), err.get("code"))
    if isinstance(err, str):
        return classify(status, err, retry_after, PROVIDER)
    return classify(status, "", retry_after, PROVIDER)


def error_in(obj: Any) -> UpstreamError | None:
    """The error an error object inside a 2xx body or a stream stands for, if it is one."""
    err = obj.get("error") if isinstance(obj, dict) else None
    if not err:
        return None
    if not isinstance(err, dict):
        return classify_status(500, str(err))
    code, kind = err.get("code"), err.get("type")
    status = _ERROR_STATUS.get(code) or _ERROR_STATUS.get(kind) or 500  # type: ignore[arg-type]
    message = str(err.get("message") or f"{PROVIDER} reported an error ({kind or code})")
    return _refine(classify_status(status, message), code)


# ---------------------------------------------------------------------------- stream


class OpenAIStreamState:
    """OpenAI chunks already carry OpenAI choices: pass them through, note usage."""

    __slots__ = ("done", "finish_reason", "started", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False
        self.started = False

    def handle(self, event: str, data: bytes, out: deque[dict[str, Any]]) -> None:
        if data == b"[DONE]":
            self.done = True
            return
        obj = orjson.loads(data)
        choices = obj.get("choices")
        if choices:
            choice = choices[0]
            if not self.started:
                self.started = True
                delta = choice.get("delta")
                if not delta or "role" not in delta:
                    out.append(role_chunk())
            finish_reason = choice.get("finish_reason")
            if finish_reason:
                self.finish_reason = finish_reason
            out.append(choice)
        elif "error" in obj:
            raise error_in(obj) or malformed(PROVIDER)
        usage = obj.get("usage")
        if usage:
            self.usage = parse_usage(usage)

    def end(self) -> None:
        # Complete when [DONE] came, or (servers that omit it) the finish and usage did.
        if not self.done and not (self.finish_reason and self.usage is not None):
            raise UpstreamError("upstream_error", f"{PROVIDER} stream ended before it was complete")


# ------------------------------------------------------------------ embeddings, images


def embed_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    payload = {k: v for k, v in body.items() if k not in GATEWAY_ONLY_FIELDS}
    payload["model"] = model
    return payload


def parse_embeddings(data: Any) -> Embeddings:
    items = data["data"]
    if not isinstance(items, list):
        raise malformed(PROVIDER)
    usage = data.get("usage") or {}
    return Embeddings(items, Usage(input_tokens=usage.get("prompt_tokens") or 0), estimated=not usage)


def base64_only(model: str) -> bool:
    """GPT Image models answer base64 only and refuse `response_format`."""
    return model.startswith(("gpt-image", "chatgpt-image"))


def image_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    payload = {k: v for k, v in body.items() if k not in GATEWAY_ONLY_FIELDS}
    payload["model"] = model
    if base64_only(model):
        payload.pop("response_format", None)
    return payload


def parse_images(data: Any, as_data_urls: bool) -> GeneratedImages:
    items = data["data"]
    if not isinstance(items, list):
        raise malformed(PROVIDER)
    if as_data_urls:
        mime = "image/" + ({"jpeg": "jpeg", "webp": "webp"}.get(data.get("output_format") or "", "png"))
        items = [
            {**{k: v for k, v in item.items() if k != "b64_json"}, "url": f"data:{mime};base64,{item['b64_json']}"}
            if "b64_json" in item else item
            for item in items
        ]
    usage = data.get("usage") or {}  # GPT Image models report tokens; DALL-E does not
    return GeneratedImages(
        items,
        Usage(
            input_tokens=usage.get("input_tokens") or 0,
            output_tokens=usage.get("output_tokens") or 0,
            images=len(items),
        ),
        data.get("created") or int(time.time()),
    )


# --------------------------------------------------------------------------- adapter


class OpenAIAdapter(WireAdapter):
    provider = PROVIDER
    build_request = staticmethod(build_request)
    parse_response = staticmethod(parse_response)
    parse_error = staticmethod(parse_error)
    error_in = staticmethod(error_in)
    stream_state = OpenAIStreamState

    def endpoint(self, target: Target, stream: bool) -> tuple[str, dict[str, str]]:
        return f"{target.base_url.rstrip('/')}/chat/completions", _headers(target, stream)

    async def embed(self, body: dict[str, Any], target: Target) -> Embeddings:
        url = f"{target.base_url.rstrip('/')}/embeddings"
        return await self.call_json(url, _headers(target, False), embed_request(body, target.model), target,
                                    parse_embeddings)

    async def generate_images(self, body: dict[str, Any], target: Target) -> GeneratedImages:
        url = f"{target.base_url.rstrip('/')}/images/generations"
        as_data_urls = body.get("response_format") == "url" and base64_only(target.model)
        return await self.call_json(url, _headers(target, False), image_request(body, target.model), target,
                                    lambda data: parse_images(data, as_data_urls))


def _headers(target: Target, stream: bool) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {target.api_key}",
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
    }
