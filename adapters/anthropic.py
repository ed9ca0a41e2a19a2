"""Anthropic Messages API <-> OpenAI chat.

POST `{base_url}/v1/messages` with `x-api-key` and `anthropic-version: 2023-06-01`.

Request: system/developer messages become the top-level `system`; tool results
(`role: tool`) become `tool_result` blocks of a user turn; consecutive turns of the
same role are merged (Anthropic wants strict alternation, and all results of one
parallel tool call in one user turn); empty text is dropped (Anthropic rejects
empty text blocks). `max_tokens` is required: the client's, else
`DEFAULT_MAX_TOKENS`.

Structured output (`response_format` json_object / json_schema) has no direct
counterpart, so it is asked for the way Anthropic documents for JSON: a tool named
`RESPONSE_TOOL` whose `input_schema` is the schema, forced with `tool_choice` (or,
next to the client's own tools under `auto`, required through `any`); its input comes
back as the message content (a JSON string, streamed as content deltas) with
`finish_reason` `stop`.

`reasoning_effort` turns on extended thinking with a token budget (`THINKING_BUDGETS`,
within the output limit, which includes thinking as OpenAI's does). Thinking blocks
travel in `message.extra_content.anthropic.thinking_blocks` so a tool round trip can
hand them back, as Anthropic requires.

Parameters Anthropic cannot honour are refused (adapters/params.py).

Usage: Anthropic's `input_tokens` excludes cache reads and cache writes, so the
gateway's input_tokens is their sum and cached_tokens the cache reads.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from .base import Completion, Target, Usage
from .common import (
    check_parameters,
    classify,
    content_chunk,
    dumps_str,
    error_object,
    finish_chunk,
    image_url,
    invalid,
    malformed,
    max_output_tokens,
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
RESPONSE_TOOL = "twoapi_response"  # the forced tool that carries structured output
RESPONSE_TOOL_DESCRIPTION = "Give your final answer by calling this tool; its input is the answer."
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}
MIN_THINKING_BUDGET = 1024

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
    url, data_url = image_url(part, PROVIDER)
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


def _thinking_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    extra = message.get("extra_content")
    blocks = ((extra.get("anthropic") or {}).get("thinking_blocks") if isinstance(extra, dict) else None)
    return [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else []


def _assistant_content(message: dict[str, Any], index: int) -> Any:
    content = message.get("content")
    calls = message.get("tool_calls")
    thinking = _thinking_blocks(message)
    if not calls and not thinking:
        return content if isinstance(content, str) else _blocks(content)
    blocks = thinking + _blocks(content)
    for n, call in enumerate(calls or ()):
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


def _tool(tool: dict[str, Any], index: int) -> dict[str, Any]:
    function = tool.get("function") or {}
    name = function.get("name")
    if name == RESPONSE_TOOL:
        raise invalid(f"the tool name {RESPONSE_TOOL!r} is reserved by the gateway on {PROVIDER}")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    if schema.get("type", "object") != "object":
        raise invalid(f"tools[{index}].function.parameters: a root of type {schema.get('type')!r} is not "
                      f"supported by {PROVIDER} (a tool's input is an object)")
    spec = {"name": name, "input_schema": schema}
    if function.get("description"):
        spec["description"] = function["description"]
    return spec


def _response_tool(response_format: dict[str, Any]) -> dict[str, Any] | None:
    """The forced tool that stands for `response_format`, or None for plain text."""
    kind = response_format.get("type")
    if kind == "json_object":
        return {"name": RESPONSE_TOOL, "description": RESPONSE_TOOL_DESCRIPTION + " Answer with a JSON object.",
                "input_schema": {"type": "object"}}
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    schema = spec.get("schema") or {"type": "object"}
    if schema.get("type") != "object":
        raise invalid(f"response_format.json_schema.schema must describe an object for {PROVIDER} "
                      "(it becomes a tool's input)")
    description = RESPONSE_TOOL_DESCRIPTION
    if spec.get("name"):
        description += f" The answer is a {spec['name']}."
    if spec.get("description"):
        description += " " + spec["description"]
    return {"name": RESPONSE_TOOL, "description": description, "input_schema": schema}


def _thinking(body: dict[str, Any], limit: int | None) -> tuple[dict[str, Any] | None, int]:
    """(thinking config or None, max_tokens) for the request's reasoning_effort."""
    budget = THINKING_BUDGETS.get(body.get("reasoning_effort"))  # type: ignore[arg-type]
    if budget is None:  # unset, "none" or "minimal": no extended thinking
        return None, limit or DEFAULT_MAX_TOKENS
    if limit is None:
        return {"type": "enabled", "budget_tokens": budget}, budget + DEFAULT_MAX_TOKENS
    if limit <= MIN_THINKING_BUDGET:
        raise invalid(f"max_completion_tokens must be above {MIN_THINKING_BUDGET} with reasoning_effort on "
                      f"{PROVIDER} (the limit includes the thinking budget)")
    return {"type": "enabled", "budget_tokens": max(MIN_THINKING_BUDGET, min(budget, limit // 2))}, limit


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
    check_parameters(PROVIDER, body)
    system, messages = build_messages(body["messages"])
    thinking, max_tokens = _thinking(body, max_output_tokens(body))
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": messages,
    }
    if system:
        payload["system"] = system
    if thinking is not None:
        payload["thinking"] = thinking
    temperature = body.get("temperature")
    if temperature is not None:  # OpenAI allows 0..2, Anthropic 0..1: above 1 is refused (params.py)
        payload["temperature"] = temperature
    top_p = body.get("top_p")
    if top_p is not None:
        payload["top_p"] = top_p
    stop = stop_sequences(body.get("stop"))
    if stop:
        payload["stop_sequences"] = stop
    tools = body.get("tools")
    choice = body.get("tool_choice")
    response_format = body.get("response_format")
    response_tool = _response_tool(response_format) if response_format else None
    if response_tool is not None and (not tools or choice == "none"):
        # Only the answer's tool, forced: the model answers by calling it.
        payload["tools"] = [response_tool]
        payload["tool_choice"] = {"type": "tool", "name": RESPONSE_TOOL}
    elif tools:
        payload["tools"] = [_tool(tool, index) for index, tool in enumerate(tools)]
        if response_tool is not None and choice in (None, "auto"):
            # Call one of the client's tools, or answer through the answer's tool.
            payload["tools"].append(response_tool)
            choice = "required"
        tool_choice = _tool_choice(choice, body.get("parallel_tool_calls"))
        if tool_choice is not None:
            payload["tool_choice"] = tool_choice
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


def _finish_reason(stop_reason: Any, answered: bool, tool_calls: int) -> str:
    reason = STOP_REASONS.get(stop_reason, "stop")
    if reason == "tool_calls" and answered and not tool_calls:
        return "stop"  # the forced answer tool was called: that is the answer
    return reason


def parse_response(data: Any) -> Completion:
    if not isinstance(data, dict):
        raise malformed(PROVIDER)
    error = error_in(data)
    if error is not None:
        raise error
    texts = []
    tool_calls = []
    thinking = []
    answer = None
    for block in data["content"]:
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            if block.get("name") == RESPONSE_TOOL:
                answer = dumps_str(block.get("input") or {})
            else:
                tool_calls.append(_tool_call(block))
        elif kind == "thinking" or kind == "redacted_thinking":
            thinking.append(block)
        # server tool blocks have no OpenAI counterpart
    if answer is not None:
        content: str | None = answer
    else:
        content = "".join(texts) if texts or not tool_calls else None
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thinking:
        message["extra_content"] = {"anthropic": {"thinking_blocks": thinking}}
    return Completion(
        message=message,
        finish_reason=_finish_reason(data.get("stop_reason"), answer is not None, len(tool_calls)),
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

    __slots__ = ("_answer", "_input", "_tools", "done", "finish_reason", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False
        self._input: dict[str, Any] = {}  # the usage message_start reported
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._answer: int | None = None  # content block index of the structured answer

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
                if obj["index"] == self._answer:
                    if delta["partial_json"]:
                        out.append(content_chunk(delta["partial_json"]))
                else:
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
            elif block_kind == "tool_use" and block["name"] == RESPONSE_TOOL:
                self._answer = obj["index"]
            elif block_kind == "tool_use":
                index = self._tools[obj["index"]] = len(self._tools)
                out.append(tool_call_chunk({
                    "index": index,
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": ""},
                }))
        elif kind == "message_delta":
            reason = _finish_reason(obj["delta"].get("stop_reason"), self._answer is not None, len(self._tools))
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
