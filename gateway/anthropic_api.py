"""POST /v1/messages: Anthropic's Messages API on the gateway, for Claude-native clients.

A Messages request is translated into the gateway's OpenAI-shaped chat body and run
through the same pipeline as `/v1/chat/completions` (routing, attempts, metering,
ledger; the Received event says `endpoint: "messages"`), so it may reach any catalog
model: `openai/gpt-4o-mini` as well as `anthropic/claude-3-5-sonnet`. The answer
(a JSON completion or the SSE chunk stream) is translated back into an Anthropic
`message` or Anthropic's SSE events (`message_start`, `content_block_*`,
`message_delta`, `message_stop`), which the official `anthropic` SDK reads.

Authentication takes the same 2api keys, in `x-api-key` (as the Anthropic SDK sends
them) or `Authorization: Bearer`. Errors use Anthropic's envelope
`{"type": "error", "error": {"type", "message"}}` with the gateway's status and
code (`error.code`), and `x-should-retry` says whether a retry can help.

Translation, in words:
- `system` (string or text blocks) becomes a system message; `cache_control` marks
  are accepted and dropped.
- user `text` / `image` blocks become OpenAI content parts; `tool_result` blocks
  become `tool` messages placed before the rest of that turn.
- assistant `text` / `tool_use` blocks become content and `tool_calls`.
- `tools` / `tool_choice` map to OpenAI functions; `stop_sequences` to `stop`;
  `metadata.user_id` to `user`. 2api's own `routing` and `models` pass through.
- `top_k` and `thinking` have no cross-provider meaning and are refused with a 400.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import orjson
from quart import Blueprint, Response, current_app, request

from gateway.chat import ChatCall, chat_completions
from gateway.errors import TAXONOMY, GatewayError, is_retryable
from gateway.services import Services
from gateway.validation import parse_json_object

ENDPOINT = "messages"
messages_api = Blueprint("anthropic_messages", __name__)

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic's error `type` for an HTTP status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}

# Every field a Messages request may carry (unknown ones are refused, as on chat).
MESSAGES_FIELDS = frozenset({
    "model", "max_tokens", "messages", "system", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "metadata", "tools", "tool_choice", "thinking", "service_tier",
    # 2api's own, as on /v1/chat/completions
    "routing", "models",
})
UNSUPPORTED = {
    "top_k": "top_k has no equivalent on every provider; leave it out.",
    "thinking": "extended thinking is not supported through the gateway.",
}
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}


@messages_api.post("/v1/messages")
async def messages() -> Response:
    services: Services = current_app.extensions["twoapi"]
    try:
        caller = await services.authenticator.authenticate(_authorization())
    except GatewayError as error:
        return anthropic_error(error)
    limit = services.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        message = f"The request body exceeds the limit of {limit} bytes."
        return anthropic_error(GatewayError("request_too_large", message))
    raw = await request.get_data(cache=False)
    try:
        body = to_chat_body(parse_json_object(raw))
    except GatewayError as error:
        # Refused before it could be translated: recorded like a refused chat request.
        call = ChatCall(services, caller, endpoint=ENDPOINT)
        call.received(raw, None)
        call.failed(error)
        with suppress(GatewayError):
            await call.commit()
        call.logged(error.status, error.code)
        return anthropic_error(error, call.headers())
    response = await chat_completions(services, caller, orjson.dumps(body), endpoint=ENDPOINT)
    headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-")}
    if "x-request-id" in headers:
        headers["request-id"] = headers["x-request-id"]
    if response.status_code != 200:
        envelope = orjson.loads(await response.get_data())
        error = envelope.get("error") or {}
        return _error_response(response.status_code, error.get("code") or "internal_error",
                               error.get("message") or "", headers, response.headers.get("retry-after"))
    if body.get("stream"):
        relay = _translate_stream(response, headers.get("x-request-id", ""))
        streamed = Response(relay, 200, {**headers, **SSE_HEADERS})
        streamed.timeout = None
        return streamed
    completion = orjson.loads(await response.get_data())
    return Response(orjson.dumps(to_message(completion)), 200, headers, content_type="application/json")


def _authorization() -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return "Bearer " + key.strip()
    return request.headers.get("authorization")


# --------------------------------------------------------------------------- request


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError("invalid_request", f"Invalid value for '{param}': {message}", param=param)


def to_chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request -> the gateway's OpenAI-shaped chat body."""
    for name in ("model", "max_tokens", "messages"):
        if body.get(name) is None:
            raise GatewayError("invalid_request", f"Missing required parameter: '{name}'.", param=name)
    for name, value in body.items():
        if name not in MESSAGES_FIELDS:
            raise GatewayError("invalid_request", f"Unrecognized request argument supplied: {name}", param=name)
        if name in UNSUPPORTED and value is not None:
            raise GatewayError("invalid_request", UNSUPPORTED[name], param=name)
    chat: dict[str, Any] = {"model": body["model"], "max_tokens": body["max_tokens"]}
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        out.append({"role": "system", "content": _system_text(system)})
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "expected a non-empty array of messages.")
    for i, message in enumerate(messages):
        out.extend(_message(message, f"messages[{i}]"))
    chat["messages"] = out
    if body.get("temperature") is not None:
        temperature = body["temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise _bad("temperature", "expected a number between 0 and 1.")
        chat["temperature"] = temperature
    for name in ("top_p", "routing", "models"):
        if body.get(name) is not None:
            chat[name] = body[name]
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 4:
            raise _bad("stop_sequences", "expected an array of at most 4 strings.")
        if stops:
            chat["stop"] = stops
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("metadata", "expected an object.")
        if metadata.get("user_id") is not None:
            if not isinstance(metadata["user_id"], str):
                raise _bad("metadata.user_id", "expected a string.")
            chat["user"] = metadata["user_id"]
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], chat)
    if body.get("service_tier") is not None and not isinstance(body["service_tier"], str):
        raise _bad("service_tier", "expected a string.")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "expected a boolean.")
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        texts = []
        for j, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise _bad(f"system[{j}]", "expected a text block.")
            texts.append(block["text"])
        return "\n\n".join(texts)
    raise _bad("system", "expected a string or an array of text blocks.")


def _message(message: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise _bad(param, "expected a message object.")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise _bad(f"{param}.role", "expected 'user' or 'assistant'.")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{param}.content", "expected a string or an array of content blocks.")
    if role == "assistant":
        return [_assistant(content, param)]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, where)})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, where)}})
        elif kind == "tool_result":
            tool_messages.append(_tool_result(block, where))
        else:
            raise _bad(where, "expected a text, image or tool_result block.")
    out = tool_messages
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(content: list[Any], param: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text(block, where))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(where, "a tool_use block needs an id and a name.")
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"], "arguments": arguments}})
        else:
            raise _bad(where, "expected a text or tool_use block in an assistant turn.")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _text(block: dict[str, Any], where: str) -> str:
    if not isinstance(block.get("text"), str):
        raise _bad(f"{where}.text", "expected a string.")
    return block["text"]


def _image_url(block: dict[str, Any], where: str) -> str:
    source = block.get("source")
    if isinstance(source, dict):
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            return f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return source["url"]
    raise _bad(f"{where}.source", "expected a base64 or url image source.")


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("tool_use_id"), str):
        raise _bad(f"{where}.tool_use_id", "a tool_result needs the id of the tool_use it answers.")
    content = block.get("content", "")
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _bad(f"{where}.content[{k}]", "only text is supported in a tool_result.")
            texts.append(_text(part, f"{where}.content[{k}]"))
        content = "\n".join(texts)
    elif not isinstance(content, str):
        raise _bad(f"{where}.content", "expected a string or text blocks.")
    if block.get("is_error"):
        content = "Error: " + content
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": content}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools", "expected an array of tools.")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _bad(f"tools[{i}]", "expected a tool with a name and an input_schema.")
        if tool.get("type") not in (None, "custom"):
            raise _bad(f"tools[{i}].type", "Anthropic's server tools are not supported through the gateway.")
        schema = tool.get("input_schema")
        if schema is not None and not isinstance(schema, dict):
            raise _bad(f"tools[{i}].input_schema", "expected a JSON Schema object.")
        function: dict[str, Any] = {"name": tool["name"], "parameters": schema or {"type": "object"}}
        if tool.get("description") is not None:
            if not isinstance(tool["description"], str):
                raise _bad(f"tools[{i}].description", "expected a string.")
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, chat: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        raise _bad("tool_choice", "expected an object with a 'type'.")
    kind = choice.get("type")
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _bad("tool_choice", "expected type auto, any, none, or tool with a name.")
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise _bad("tool_choice.disable_parallel_tool_use", "expected a boolean.")
    if disable and "tools" in chat:
        chat["parallel_tool_calls"] = False


# --------------------------------------------------------------------------- response


def message_id(completion_id: str) -> str:
    return "msg_" + completion_id.removeprefix("chatcmpl-")


def usage_of(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": (usage.get("prompt_tokens") or 0) - cached,
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _tool_input(arguments: str) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": arguments}


def to_message(completion: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completion -> an Anthropic message."""
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                        "input": _tool_input(function.get("arguments") or "")})
    return {
        "id": message_id(completion["id"]),
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage_of(completion.get("usage")),
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class StreamTranslator:
    """OpenAI `chat.completion.chunk` frames -> Anthropic stream events."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.started = False
        self.index = -1  # the open content block's index
        self.open: str | None = None  # "text" or "tool:<openai tool-call index>"
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.ended = False

    def start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        return _event("message_start", {"type": "message_start", "message": {
            "id": message_id(chunk.get("id") or ""), "type": "message", "role": "assistant",
            "model": chunk.get("model"), "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.index += 1
        self.open = kind
        return out + _event("content_block_start",
                            {"type": "content_block_start", "index": self.index, "content_block": block})

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self.start(chunk)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self.open != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out += _event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                      "delta": {"type": "text_delta", "text": text}})
            for call in delta.get("tool_calls") or ():
                kind = f"tool:{call.get('index', 0)}"
                function = call.get("function") or {}
                if self.open != kind or call.get("id"):
                    out += self._open(kind, {"type": "tool_use", "id": call.get("id") or "",
                                             "name": function.get("name") or "", "input": {}})
                if function.get("arguments"):
                    out += _event("content_block_delta", {
                        "type": "content_block_delta", "index": self.index,
                        "delta": {"type": "input_json_delta", "partial_json": function["arguments"]},
                    })
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def done(self) -> bytes:
        self.ended = True
        out = b"" if self.started else self.start({"id": "", "model": None})
        out += self._close()
        out += _event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": STOP_REASONS.get(self.finish_reason or "stop", "end_turn"),
                      "stop_sequence": None},
            "usage": usage_of(self.usage),
        })
        return out + _event("message_stop", {"type": "message_stop"})

    def error(self, envelope: dict[str, Any]) -> bytes:
        self.ended = True
        error = envelope.get("error") or {}
        code = error.get("code") or "upstream_error"
        status = TAXONOMY[code].status if code in TAXONOMY else 502
        return _event("error", {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                                            "message": error.get("message") or "", "code": code},
                                "request_id": self.request_id})


async def _translate_stream(response: Response, request_id: str) -> AsyncIterator[bytes]:
    """Relay the chat stream as Anthropic events. Closing this generator closes the
    chat relay, which records a client disconnect as it does for chat streams."""
    translator = StreamTranslator(request_id)
    buffer = b""
    async with response.response as frames:
        async for frame in frames:
            buffer += frame
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if not event.startswith(b"data: "):
                    continue
                data = event[6:]
                if data == b"[DONE]":
                    yield translator.done()
                    continue
                payload = orjson.loads(data)
                if "error" in payload and "choices" not in payload:
                    yield translator.error(payload)
                    continue
                out = translator.chunk(payload)
                if out:
                    yield out


# --------------------------------------------------------------------------- errors


def anthropic_error(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    merged = {**(headers or {}), **(error.headers or {})}
    return _error_response(error.status, error.code, error.message, merged, None)


def _error_response(status: int, code: str, message: str, headers: dict[str, str],
                    retry_after: str | None) -> Response:
    body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message, "code": code}}
    request_id = headers.get("x-request-id")
    if request_id:
        body["request_id"] = request_id
        headers = {**headers, "request-id": request_id}
    headers = {**headers, "x-should-retry": "true" if is_retryable(code) else "false"}
    if retry_after:
        headers["retry-after"] = retry_after
    return Response(orjson.dumps(body), status, headers, content_type="application/json")
