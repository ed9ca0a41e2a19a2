"""Anthropic's wire protocol: `POST /v1/messages` (plain and SSE), token counting and
`GET /v1/models`.

Tools (see simulator/tools.py for when and which): `tool_use` blocks (`toolu_...` ids,
`input` as an object) with `stop_reason: tool_use`; streamed as a `content_block_start`
with empty input, an empty `input_json_delta`, then argument fragments. `tool_choice`
`auto`/`any`/`tool`/`none` and `disable_parallel_tool_use` are honoured. As Anthropic
does, every `tool_result` must answer a `tool_use` of the assistant turn just before,
and every `tool_use` must be answered in the next user turn. Image blocks must be
base64 of jpeg/png/gif/webp or a URL source. `thinking` (enabled, with a budget below
`max_tokens`) adds a thinking block with a signature; then assistant turns holding
`tool_use` must start with their thinking block, or the request is refused, as the real
API refuses it. The content_filter fault answers `stop_reason: refusal`.

Headers `x-api-key` (the key "invalid" or none -> 401 `authentication_error`) and
`anthropic-version` (none -> 400) are required, and so is `max_tokens`, as on the
real API. Errors are `{"type": "error", "error": {"type", "message"}}` with a
`request-id` header. Usage follows Anthropic: `input_tokens` excludes the tokens read
from (`cache_read_input_tokens`) or written to (`cache_creation_input_tokens`) the
prompt cache. Cache writes are reported only when the system prompt carries a
`cache_control` marker; reads follow the simulator's cache rule (see `control`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any, ClassVar

import orjson
from aiohttp import web

from . import media
from .serving import (
    Conversation,
    Metered,
    StreamPlan,
    admit,
    admit_get,
    handle,
    json_response,
    positive_int,
    retry_after_header,
)
from .text import MESSAGE_OVERHEAD, REPLY_PRIMING, Reply, content_text, content_tokens, count_tokens, json_tokens
from .tools import ToolChoice, ToolSpec

MODELS = (
    ("claude-3-5-sonnet-20241022", "Claude 3.5 Sonnet (New)"),
    ("claude-3-5-haiku-20241022", "Claude 3.5 Haiku"),
    ("claude-3-opus-20240229", "Claude 3 Opus"),
    ("claude-3-7-sonnet-20250219", "Claude 3.7 Sonnet"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4"),
)
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence",
                "tool_calls": "tool_use", "content_filter": "refusal"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DEFAULT_MESSAGES = {
    401: "invalid x-api-key",
    404: "model not found",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error",
    503: "Service unavailable",
    529: "Overloaded",
}

_ids = itertools.count(1)
_ID_PREFIX = "msg_sim" + os.urandom(4).hex()


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    text = message or DEFAULT_MESSAGES.get(status) or f"Simulated error {status}."
    return {"type": "error", "error": {"type": kind, "message": text}}


def _event(name: bytes, data: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _has_cache_control(system: Any) -> bool:
    return isinstance(system, list) and any(isinstance(b, dict) and b.get("cache_control") for b in system)


class AnthropicWire:
    name: ClassVar[str] = "anthropic"

    def authenticate(self, request: web.Request) -> web.Response | None:
        headers = request.headers
        key = headers.get("x-api-key")
        if key is None:
            scheme, _, token = headers.get("Authorization", "").partition(" ")
            key = token if scheme.lower() == "bearer" else None
        if not key or not key.strip():
            return self.error(401, "x-api-key header is required")
        if key.strip() == "invalid":
            return self.error(401)
        if not headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        return None

    def error(self, status: int, message: str | None = None, retry_after: float | None = None) -> web.Response:
        if message == "invalid_json":
            message = "There was an issue with your request body: the body is not valid JSON."
        headers = {"Content-Type": "application/json", "request-id": f"req_sim{next(_ids):016x}"}
        if retry_after is not None:
            headers["retry-after"] = retry_after_header(retry_after)
        return json_response(_error_body(status, message), status, headers)

    def parse(self, request: web.Request, body: dict[str, Any], counting: bool = False) -> Conversation | web.Response:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self.error(400, "model: Field required")
        limit = body.get("max_tokens")
        if not counting:
            if limit is None:
                return self.error(400, "max_tokens: Field required")
            if not positive_int(limit):
                return self.error(400, "max_tokens: Input should be a valid integer greater than or equal to 1")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.error(
                400, "messages: Field required" if messages is None else "messages: at least one message is required"
            )

        tokens = REPLY_PRIMING
        system = body.get("system")
        system_text = ""
        if system:
            if not isinstance(system, str | list):
                return self.error(400, "system: Input should be a valid string or a list of text blocks")
            tokens += MESSAGE_OVERHEAD + content_tokens(system)
            system_text = content_text(system)
        prompt = ""
        thinking = body.get("thinking")
        thinking_on = isinstance(thinking, dict) and thinking.get("type") == "enabled"
        if thinking_on:
            budget = thinking.get("budget_tokens")
            if not positive_int(budget) or budget < 1024:
                return self.error(400, "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            if not counting and budget >= limit:
                return self.error(400, "`max_tokens` must be greater than `thinking.budget_tokens`.")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                return self.error(400, f"messages.{index}.role: Input should be 'user' or 'assistant'")
            content = message.get("content")
            tokens += MESSAGE_OVERHEAD + content_tokens(content)
            if message["role"] == "user" and _has_text(content):
                prompt = content_text(content)
            problem = _block_problem(content, index, thinking_on and message["role"] == "assistant")
            if problem is not None:
                return self.error(400, problem)
        problem = _tool_turn_problem(messages)
        if problem is not None:
            return self.error(400, problem)
        tools = body.get("tools")
        if tools:
            tokens += json_tokens(tools)
        specs, choice = _tools(tools, body.get("tool_choice"))
        if thinking_on and choice.mode in ("required", "named"):
            return self.error(400, "Thinking may not be enabled when tool_choice forces tool use.")
        last = messages[-1].get("content")
        after_result = messages[-1].get("role") == "user" and isinstance(last, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in last)

        stop = body.get("stop_sequences") or ()
        if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
            return self.error(400, "stop_sequences: Input should be a valid list of strings")
        return Conversation(
            model=model,
            prompt=prompt,
            input_tokens=tokens,
            stream=body.get("stream") is True,
            max_tokens=limit,
            stop=tuple(stop),
            system_text=system_text,
            system_tokens=count_tokens(system_text),
            cache_marked=_has_cache_control(system),
            options={"thinking": thinking_on},
            tools=specs,
            tool_choice=choice,
            after_tool_result=after_result,
            call_id_prefix="toolu_",
        )

    @staticmethod
    def _usage(conv: Conversation, usage: Metered, output_tokens: int) -> dict[str, Any]:
        written = usage.cache_write_tokens if conv.cache_marked else 0
        return {
            "input_tokens": usage.input_tokens - usage.cached_tokens - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": usage.cached_tokens,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def plain(self, conv: Conversation, reply: Reply, usage: Metered) -> web.Response:
        return json_response(
            {
                "id": f"{_ID_PREFIX}{next(_ids):012x}",
                "type": "message",
                "role": "assistant",
                "model": conv.model,
                "content": _content(reply),
                "stop_reason": STOP_REASONS[reply.finish],
                "stop_sequence": reply.stop_sequence,
                "usage": self._usage(conv, usage, reply.output_tokens),
            },
            headers={"Content-Type": "application/json", "request-id": f"req_sim{next(_ids):016x}"},
        )

    def stream(self, conv: Conversation, reply: Reply, usage: Metered) -> StreamPlan:
        start = {
            "type": "message_start",
            "message": {
                "id": f"{_ID_PREFIX}{next(_ids):012x}",
                "type": "message",
                "role": "assistant",
                "model": conv.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                # Like the real API: a provisional output count, superseded by message_delta.
                "usage": self._usage(conv, usage, 1),
            },
        }
        head = [_event(b"message_start", start)]
        block = 0
        if reply.thinking:
            head += [
                _event(b"content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "thinking", "thinking": ""}}),
                _event(b"content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "thinking_delta", "thinking": reply.thinking}}),
                _event(b"content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "signature_delta", "signature": _signature(reply)}}),
                _block_stop(0),
            ]
            block = 1
        if reply.tool_calls:
            tokens = []
            for call in reply.tool_calls:
                start_block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
                tokens.append(_event(b"content_block_start", {"type": "content_block_start", "index": block,
                                                              "content_block": start_block}))
                for piece in ("", *call.fragments):
                    tokens.append(_event(b"content_block_delta", {
                        "type": "content_block_delta", "index": block,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}))
                tokens.append(_block_stop(block))
                block += 1
            return StreamPlan(head=head, tokens=tokens, tail=self._tail(reply), awkward=True)
        # The text deltas differ only in their text: splice it into a pre-serialised frame.
        prefix = (
            b"event: content_block_delta\n"
            b'data: {"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":' % block
        )
        tokens = [prefix + orjson.dumps(piece) + b"}}\n\n" for piece in reply.pieces]
        head += [
            _event(
                b"content_block_start",
                {"type": "content_block_start", "index": block, "content_block": {"type": "text", "text": ""}},
            ),
            b'event: ping\ndata: {"type": "ping"}\n\n',
        ]
        return StreamPlan(head=head, tokens=tokens, tail=[_block_stop(block), *self._tail(reply)])

    @staticmethod
    def _tail(reply: Reply) -> list[bytes]:
        return [
                _event(
                    b"message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": STOP_REASONS[reply.finish], "stop_sequence": reply.stop_sequence},
                        "usage": {"output_tokens": reply.output_tokens},
                    },
                ),
                b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
            ]

    def stream_error(self, status: int, message: str | None) -> bytes:
        return _event(b"error", _error_body(status, message))

    def malformed_event(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {\n\n'


def _block_stop(index: int) -> bytes:
    return b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n' % index


def _signature(reply: Reply) -> str:
    return "sig" + hashlib.sha256(reply.thinking.encode()).hexdigest()[:32]


def _content(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.thinking:
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": _signature(reply)})
    if reply.tool_calls:
        blocks.extend({"type": "tool_use", "id": call.id, "name": call.name,
                       "input": call.args if isinstance(call.args, dict) else {}} for call in reply.tool_calls)
    elif reply.text or not blocks:
        blocks.append({"type": "text", "text": reply.text})
    return blocks


def _has_text(content: Any) -> bool:
    return isinstance(content, str) or (
        isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "text" for b in content))


def _tools(tools: Any, choice: Any) -> tuple[list[ToolSpec], ToolChoice]:
    specs = [ToolSpec(t["name"], t.get("input_schema")) for t in tools or ()
             if isinstance(t, dict) and isinstance(t.get("name"), str)]
    if not isinstance(choice, dict):
        return specs, ToolChoice()
    parallel = not choice.get("disable_parallel_tool_use")
    kind = choice.get("type")
    if kind == "tool":
        return specs, ToolChoice("named", (choice.get("name"),), parallel)
    return specs, ToolChoice({"any": "required", "none": "none"}.get(kind, "auto"), (), parallel)


def _block_problem(content: Any, index: int, needs_thinking_first: bool) -> str | None:
    if not isinstance(content, list):
        return None
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            return f"messages.{index}.content.{j}: Input should be a valid dictionary"
        kind = block.get("type")
        if kind == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64":
                if source.get("media_type") not in media.IMAGE_MEDIA_TYPES:
                    return (f"messages.{index}.content.{j}.image.source.base64.media_type: Input should be "
                            "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
                if not media.valid_base64(source.get("data")):
                    return f"messages.{index}.content.{j}.image.source.base64: invalid base64 data"
            elif source.get("type") == "url":
                if not str(source.get("url", "")).startswith(("https://", "http://")):
                    return f"messages.{index}.content.{j}.image.source.url: Input should be a valid URL"
            else:
                return f"messages.{index}.content.{j}.image.source: Input tag {source.get('type')!r} does not match"
        elif kind == "text" and not block.get("text"):
            return f"messages.{index}.content.{j}: text content blocks must be non-empty"
    if needs_thinking_first and any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content):
        first = content[0].get("type") if content else None
        if first not in ("thinking", "redacted_thinking"):
            return (f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a "
                    "thinking block.")
    return None


def _tool_turn_problem(messages: list[Any]) -> str | None:
    """Anthropic's rule: tool_result blocks answer the tool_use blocks of the turn before."""
    open_ids: list[str] = []
    for index, message in enumerate(messages):
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if message.get("role") == "user":
            answered = [b.get("tool_use_id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
            unexpected = [i for i in answered if i not in open_ids]
            if unexpected:
                return (f"messages.{index}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{unexpected[0]}. Each `tool_result` block must have a corresponding `tool_use` block in "
                        "the previous message.")
            missing = [i for i in open_ids if i not in answered]
            if missing:
                return (f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately "
                        f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                        "`tool_result` block in the next message.")
            open_ids = []
        else:
            if open_ids:
                return (f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately "
                        f"after: {', '.join(open_ids)}.")
            open_ids = [b.get("id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"]
    return None


WIRE = AnthropicWire()
_MODEL_ENTRIES = [
    {"type": "model", "id": model, "display_name": display, "created_at": "2024-10-22T00:00:00Z"}
    for model, display in MODELS
]
_MODEL_LIST = orjson.dumps(
    {"data": _MODEL_ENTRIES, "has_more": False, "first_id": MODELS[0][0], "last_id": MODELS[-1][0]}
)


def is_anthropic(request: web.Request) -> bool:
    """Whether a request on a path both APIs share (`/v1/models`) is Anthropic's."""
    return "x-api-key" in request.headers or "anthropic-version" in request.headers


async def messages(request: web.Request) -> web.StreamResponse:
    return await handle(WIRE, request)


async def count_message_tokens(request: web.Request) -> web.Response:
    conv = await admit(WIRE, request, counting=True)
    if not isinstance(conv, Conversation):
        return conv
    return json_response({"input_tokens": conv.input_tokens})


async def list_models(request: web.Request) -> web.Response:
    return admit_get(WIRE, request) or web.Response(body=_MODEL_LIST, content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    denied = admit_get(WIRE, request)
    if denied is not None:
        return denied
    model = request.match_info["model"]
    entry = next((e for e in _MODEL_ENTRIES if e["id"] == model), None)
    return json_response(
        entry or {"type": "model", "id": model, "display_name": model, "created_at": "2024-10-22T00:00:00Z"}
    )
