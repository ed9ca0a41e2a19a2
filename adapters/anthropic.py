"""Anthropic Messages API <-> OpenAI chat.

POST `{base_url}/v1/messages` with `x-api-key` and `anthropic-version: 2023-06-01`.

Request: system/developer messages become the top-level `system`; tool results
(`role: tool`) become `tool_result` blocks of a user turn; consecutive turns of the
same role are merged (Anthropic wants strict alternation, and all results of one
parallel tool call in one user turn); empty text is dropped (Anthropic rejects
empty text blocks). `max_tokens` is required: the client's, else
`DEFAULT_MAX_TOKENS`.

Usage: Anthropic's `input_tokens` excludes cache reads and cache writes, so the
gateway's input_tokens is their sum and cached_tokens the cache reads.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from .base import Completion, Target, Usage
from .common import (
    classify,
    content_chunk,
    dumps_str,
    error_object,
    finish_chunk,
    invalid,
    malformed,
    max_output_tokens,
    parse_data_url,
    role_chunk,
    stop_sequences,
    text_of,
    tool_arguments,
    tool_call_chunk,
)
from .errors import UpstreamError, classify_status
from .http import WireAdapter

PROVIDER = "anthropic"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error `type` -> the HTTP status Anthropic uses for it (for error events
# inside a stream, which carry no status).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


# --------------------------------------------------------------------------- request


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not url:
        raise invalid("image_url part without a url")
    data_url = parse_data_url(url)
    if data_url is not None:
        media_type, data = data_url
        return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                            "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    """Anthropic content blocks of an OpenAI content value (empty text dropped)."""
    if not content:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text" or kind == "refusal":
            text = part.get(kind)
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image_block(part))
        else:
            raise invalid(f"content part type {kind!r} is not supported by {PROVIDER}")
    return blocks


def _assistant_content(message: dict[str, Any], index: int) -> Any:
    content = message.get("content")
    calls = message.get("tool_calls")
    if not calls:
        return content if isinstance(content, str) else _blocks(content)
    blocks = _blocks(content)
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        blocks.append({
            "type": "tool_use",
            "id": call.get("id"),
            "name": function.get("name"),
            "input": tool_arguments(function.get("arguments"),
                                    f"messages[{index}].tool_calls[{n}]"),
        })
    return blocks


def _tool_result(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [{
        "type": "tool_result",
        "tool_use_id": message.get("tool_call_id"),
        "content": text_of(message.get("content")),
    }]


def build_messages(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """(system, messages) of an OpenAI message list."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "system" or role == "developer":
            text = text_of(message.get("content"))
            if text:
                system.append(text)
            continue
        if role == "assistant":
            content = _assistant_content(message, index)
        elif role == "tool":
            role, content = "user", _tool_result(message)
        else:  # user
            content = message.get("content")
            if not isinstance(content, str):
                content = _blocks(content)
        if not content:
            continue
        if out and out[-1]["role"] == role:
            previous = out[-1]
            merged = previous["content"]
            if isinstance(merged, str):
                merged = previous["content"] = [{"type": "text", "text": merged}]
            if isinstance(content, str):
                merged.append({"type": "text", "text": content})
            else:
                merged.extend(content)
        else:
            out.append({"role": role, "content": content})
    return ("\n\n".join(system) if system else None), out


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    spec = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        spec["description"] = function["description"]
    return spec


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        result = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict):
        result = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        raise invalid(f"tool_choice {choice!r} is not supported by {PROVIDER}")
    if result is not None and parallel is False:
        result["disable_parallel_tool_use"] = True
    return result


def build_request(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    system, messages = build_messages(body["messages"])
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": max_output_tokens(body) or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        payload["system"] = system
    temperature = body.get("temperature")
    if temperature is not None:
        payload["temperature"] = min(temperature, 1.0)  # OpenAI allows 0..2, Anthropic 0..1
    top_p = body.get("top_p")
    if top_p is not None:
        payload["top_p"] = top_p
    stop = stop_sequences(body.get("stop"))
    if stop:
        payload["stop_sequences"] = stop
    tools = body.get("tools")
    if tools:
        payload["tools"] = [_tool(tool) for tool in tools]
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            payload["tool_choice"] = choice
    user = body.get("user")
    if user:
        payload["metadata"] = {"user_id": user}
    if stream:
        payload["stream"] = True
    return payload


# -------------------------------------------------------------------------- response


def parse_usage(usage: dict[str, Any] | None) -> Usage:
    if not usage:
        return Usage()
    cache_read = usage.get("cache_read_input_tokens") or 0
    return Usage(
        input_tokens=(usage.get("input_tokens") or 0)
        + cache_read
        + (usage.get("cache_creation_input_tokens") or 0),
        output_tokens=usage.get("output_tokens") or 0,
        cached_tokens=cache_read,
    )


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": dumps_str(block.get("input") or {})},
    }


def parse_response(data: Any) -> Completion:
    if not isinstance(data, dict):
        raise malformed(PROVIDER)
    error = error_in(data)
    if error is not None:
        raise error
    texts = []
    tool_calls = []
    for block in data["content"]:
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block))
        # thinking / redacted_thinking / server tool blocks have no OpenAI counterpart
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return Completion(
        message=message,
        finish_reason=STOP_REASONS.get(data.get("stop_reason"), "stop"),
        usage=parse_usage(data.get("usage")),
    )


# ---------------------------------------------------------------------------- errors


def _error(kind: Any, message: str, status: int, retry_after: float | None) -> UpstreamError:
    error = classify(status, message, retry_after, PROVIDER)
    if kind == "overloaded_error":
        error.code = "upstream_overloaded"
    return error


def parse_error(status: int, body: bytes, retry_after: float | None) -> UpstreamError:
    """A non-2xx answer: `{"type": "error", "error": {"type", "message"}}`."""
    obj = error_object(body)
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        return _error(err.get("type"), str(err.get("message") or ""), status, retry_after)
    return classify(status, "", retry_after, PROVIDER)


def error_in(obj: Any) -> UpstreamError | None:
    """The error an error object (an `error` stream event, an error body) stands for."""
    if not isinstance(obj, dict) or obj.get("type") != "error":
        return None
    err = obj.get("error")
    if not isinstance(err, dict):
        return classify_status(500, f"{PROVIDER} reported an error")
    kind = err.get("type")
    message = str(err.get("message") or f"{PROVIDER} reported an error ({kind})")
    return _error(kind, message, ERROR_STATUS.get(kind, 500), None)


# ---------------------------------------------------------------------------- stream


class AnthropicStreamState:
    """message_start / content_block_* / message_delta / message_stop -> OpenAI chunks.

    `usage` is the provider's latest report: input tokens from message_start, the
    final output count from message_delta.
    """

    __slots__ = ("_input", "_tools", "done", "finish_reason", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False
        self._input: dict[str, Any] = {}  # the usage message_start reported
        self._tools: dict[int, int] = {}  # content block index -> tool call index

    def handle(self, event: str, data: bytes, out: deque[dict[str, Any]]) -> None:
        if event == "ping":
            return
        obj = orjson.loads(data)
        kind = obj["type"]
        if kind == "content_block_delta":
            delta = obj["delta"]
            delta_kind = delta["type"]
            if delta_kind == "text_delta":
                out.append(content_chunk(delta["text"]))
            elif delta_kind == "input_json_delta":
                out.append(tool_call_chunk({
                    "index": self._tools[obj["index"]],
                    "function": {"arguments": delta["partial_json"]},
                }))
            # thinking_delta, signature_delta, citations_delta: nothing to relay
        elif kind == "message_start":
            self._input = obj["message"].get("usage") or {}
            # The input side is final from here on; if the stream is cut, the gateway
            # still knows what the prompt cost.
            self.usage = parse_usage(self._input)
            out.append(role_chunk())
        elif kind == "content_block_start":
            block = obj["content_block"]
            block_kind = block["type"]
            if block_kind == "text":
                if block.get("text"):
                    out.append(content_chunk(block["text"]))
            elif block_kind == "tool_use":
                index = self._tools[obj["index"]] = len(self._tools)
                out.append(tool_call_chunk({
                    "index": index,
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": ""},
                }))
        elif kind == "message_delta":
            reason = STOP_REASONS.get(obj["delta"].get("stop_reason"), "stop")
            self.finish_reason = reason
            # message_delta usage is cumulative; input counts appear in it on newer
            # API versions and then win over message_start's.
            usage = {**self._input, **{k: v for k, v in (obj.get("usage") or {}).items()
                                       if v is not None}}
            self.usage = parse_usage(usage)
            out.append(finish_chunk(reason))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise error_in(obj) or malformed(PROVIDER)
        # content_block_stop and unknown event types carry nothing to relay

    def end(self) -> None:
        if not self.done:
            raise UpstreamError("upstream_error", f"{PROVIDER} stream ended before it was complete")


# --------------------------------------------------------------------------- adapter


class AnthropicAdapter(WireAdapter):
    provider = PROVIDER
    build_request = staticmethod(build_request)
    parse_response = staticmethod(parse_response)
    parse_error = staticmethod(parse_error)
    error_in = staticmethod(error_in)
    stream_state = AnthropicStreamState

    def endpoint(self, target: Target, stream: bool) -> tuple[str, dict[str, str]]:
        return f"{target.base_url.rstrip('/')}/v1/messages", {
            "x-api-key": target.api_key,
            "anthropic-version": API_VERSION,
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
