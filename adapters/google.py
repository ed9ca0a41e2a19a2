"""Google Gemini API (generateContent) <-> OpenAI chat.

POST `{base_url}/v1beta/models/{model}:generateContent`, streams
`...:streamGenerateContent?alt=sse` (each SSE event is a whole GenerateContentResponse;
the stream ends with the body, there is no end marker), header `x-goog-api-key`.

Request: system/developer messages become `systemInstruction`; assistant turns are
role `model`; tool results are `functionResponse` parts of a user turn (named after
the call they answer, since Gemini matches by name); consecutive turns of the same
role are merged; sampling options go to `generationConfig`.

Response: Gemini's function calls carry no id (or an id only on some surfaces), so
tool calls get a fresh `call_...` id when Gemini gives none; a `thoughtSignature`
travels in `tool_calls[i].extra_content.google.thought_signature` (the convention of
Google's own OpenAI-compatible endpoint) and is handed back on the next turn.

Usage: `promptTokenCount` includes cached tokens; output is candidates + thoughts.
"""

from __future__ import annotations

import mimetypes
import os
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

PROVIDER = "google"

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}

# google.rpc status -> HTTP status, for error objects without a numeric code.
_RPC_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


# --------------------------------------------------------------------------- request


def _image_part(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not url:
        raise invalid("image_url part without a url")
    data_url = parse_data_url(url)
    if data_url is not None:
        return {"inlineData": {"mimeType": data_url[0], "data": data_url[1]}}
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    """Gemini parts of an OpenAI content value (empty text dropped)."""
    if not content:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    parts = []
    for part in content:
        kind = part.get("type")
        if kind == "text" or kind == "refusal":
            text = part.get(kind)
            if text:
                parts.append({"text": text})
        elif kind == "image_url":
            parts.append(_image_part(part))
        else:
            raise invalid(f"content part type {kind!r} is not supported by {PROVIDER}")
    return parts


def _call_parts(
    message: dict[str, Any], index: int, names: dict[str, str]
) -> list[dict[str, Any]]:
    parts = _parts(message.get("content"))
    for n, call in enumerate(message["tool_calls"]):
        function = call.get("function") or {}
        name = function.get("name")
        if call.get("id"):
            names[call["id"]] = name
        part: dict[str, Any] = {"functionCall": {
            "name": name,
            "args": tool_arguments(function.get("arguments"), f"messages[{index}].tool_calls[{n}]"),
        }}
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = names.get(call_id) or message.get("name") or call_id  # type: ignore[arg-type]
    text = text_of(message.get("content"))
    try:
        result = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        result = {"output": text}  # Gemini wants an object: "output" is its documented key
    return {"functionResponse": {"name": name, "response": result}}


def build_contents(messages: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(systemInstruction parts, contents) of an OpenAI message list."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for tool results
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "system" or role == "developer":
            text = text_of(message.get("content"))
            if text:
                system.append({"text": text})
            continue
        if role == "assistant":
            role = "model"
            parts = (
                _call_parts(message, index, names)
                if message.get("tool_calls")
                else _parts(message.get("content"))
            )
        elif role == "tool":
            role, parts = "user", [_function_response(message, names)]
        else:
            parts = _parts(message.get("content"))
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    get = body.get
    if get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if get("top_p") is not None:
        config["topP"] = body["top_p"]
    limit = max_output_tokens(body)
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = stop_sequences(get("stop"))
    if stop:
        config["stopSequences"] = stop
    if get("presence_penalty") is not None:
        config["presencePenalty"] = body["presence_penalty"]
    if get("frequency_penalty") is not None:
        config["frequencyPenalty"] = body["frequency_penalty"]
    if get("seed") is not None:
        config["seed"] = body["seed"]
    response_format = get("response_format")
    if response_format:
        kind = response_format.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            config["responseMimeType"] = "application/json"
            schema = (response_format.get("json_schema") or {}).get("schema")
            if schema:
                config["responseJsonSchema"] = schema
    return config


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    declarations = []
    for tool in tools:
        function = tool.get("function") or {}
        declaration: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            # JSON Schema as OpenAI clients write it; `parameters` would take only
            # Gemini's OpenAPI subset.
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "required":
        config = {"mode": "ANY"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif isinstance(choice, dict):
        config = {"mode": "ANY",
                  "allowedFunctionNames": [(choice.get("function") or {}).get("name")]}
    else:
        raise invalid(f"tool_choice {choice!r} is not supported by {PROVIDER}")
    return {"functionCallingConfig": config}


def build_request(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """The generateContent body (the model and streaming are in the URL, not here)."""
    system, contents = build_contents(body["messages"])
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    config = _generation_config(body)
    if config:
        payload["generationConfig"] = config
    tools = body.get("tools")
    if tools:
        payload["tools"] = _tools(tools)
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config is not None:
            payload["toolConfig"] = tool_config
    return payload


# -------------------------------------------------------------------------- response


def parse_usage(meta: dict[str, Any] | None) -> Usage:
    if not meta:
        return Usage()
    return Usage(
        # tool-use prompt tokens (e.g. grounding results) are billed as input too
        input_tokens=(meta.get("promptTokenCount") or 0)
        + (meta.get("toolUsePromptTokenCount") or 0),
        output_tokens=(meta.get("candidatesTokenCount") or 0)
        + (meta.get("thoughtsTokenCount") or 0),
        cached_tokens=meta.get("cachedContentTokenCount") or 0,
    )


def _new_call_id() -> str:
    return "call_" + os.urandom(12).hex()


def _tool_call(call: dict[str, Any], signature: str | None) -> dict[str, Any]:
    tool_call: dict[str, Any] = {
        "id": call.get("id") or _new_call_id(),
        "type": "function",
        "function": {"name": call["name"], "arguments": dumps_str(call.get("args") or {})},
    }
    if signature:
        tool_call["extra_content"] = {"google": {"thought_signature": signature}}
    return tool_call


def _blocked(data: dict[str, Any]) -> UpstreamError:
    reason = (data.get("promptFeedback") or {}).get("blockReason")
    if reason:
        return UpstreamError("content_filtered", f"{PROVIDER} blocked the prompt ({reason})")
    return malformed(PROVIDER)


def parse_response(data: Any) -> Completion:
    if isinstance(data, list) and len(data) == 1:  # some error bodies come wrapped in a list
        data = data[0]
    if not isinstance(data, dict):
        raise malformed(PROVIDER)
    error = error_in(data)
    if error is not None:
        raise error
    candidates = data.get("candidates")
    if not candidates:
        raise _blocked(data)
    candidate = candidates[0]
    texts = []
    tool_calls = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "text" in part:
            if not part.get("thought"):  # thought summaries are not the answer
                texts.append(part["text"])
        elif "functionCall" in part:
            tool_calls.append(_tool_call(part["functionCall"], part.get("thoughtSignature")))
    finish_reason = FINISH_REASONS.get(candidate.get("finishReason"), "stop")
    if tool_calls and finish_reason == "stop":
        finish_reason = "tool_calls"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return Completion(
        message=message, finish_reason=finish_reason, usage=parse_usage(data.get("usageMetadata"))
    )


# ---------------------------------------------------------------------------- errors


def _retry_delay(err: dict[str, Any]) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail (`"retryDelay": "30s"`), if any."""
    for detail in err.get("details") or ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


def _is_key_error(err: dict[str, Any]) -> bool:
    for detail in err.get("details") or ():
        if isinstance(detail, dict) and detail.get("reason") in ("API_KEY_INVALID",
                                                                 "API_KEY_EXPIRED"):
            return True
    return "api key not valid" in str(err.get("message", "")).lower()


def _error(err: dict[str, Any], status: int, retry_after: float | None) -> UpstreamError:
    if retry_after is None:
        retry_after = _retry_delay(err)
    error = classify(status, str(err.get("message") or ""), retry_after, PROVIDER)
    if _is_key_error(err):  # Gemini answers a bad key with 400 INVALID_ARGUMENT
        error.code = "upstream_auth_error"
    return error


def _error_dict(obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, list) and obj:
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    return err if isinstance(err, dict) else None


def parse_error(status: int, body: bytes, retry_after: float | None) -> UpstreamError:
    """A non-2xx answer: `{"error": {"code", "message", "status", "details"}}`."""
    err = _error_dict(error_object(body))
    if err is None:
        return classify(status, "", retry_after, PROVIDER)
    return _error(err, status, retry_after)


def error_in(obj: Any) -> UpstreamError | None:
    err = _error_dict(obj)
    if err is None:
        if isinstance(obj, dict) and obj.get("error"):
            return classify_status(500, f"{PROVIDER} reported an error")
        return None
    code = err.get("code")
    status = code if isinstance(code, int) and code >= 400 else _RPC_STATUS.get(
        err.get("status"), 500)  # type: ignore[arg-type]
    return _error(err, status, None)


# ---------------------------------------------------------------------------- stream


class GoogleStreamState:
    """Each event is a whole response chunk: its text parts become content deltas.

    `usage` is the latest `usageMetadata` (every chunk carries the prompt count; the
    last one the output count too).
    """

    __slots__ = ("_tool_count", "done", "finish_reason", "started", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False  # Gemini has no end marker: the body's end is the end
        self.started = False
        self._tool_count = 0

    def handle(self, event: str, data: bytes, out: deque[dict[str, Any]]) -> None:
        obj = orjson.loads(data)
        if "error" in obj:
            raise error_in(obj) or malformed(PROVIDER)
        candidates = obj.get("candidates")
        if not candidates and (obj.get("promptFeedback") or {}).get("blockReason"):
            raise _blocked(obj)
        if not self.started:
            self.started = True
            out.append(role_chunk())
        meta = obj.get("usageMetadata")
        if meta:
            self.usage = parse_usage(meta)
        if not candidates:
            return
        candidate = candidates[0]
        content = candidate.get("content")
        if content:
            for part in content.get("parts") or ():
                if "text" in part:
                    if part["text"] and not part.get("thought"):
                        out.append(content_chunk(part["text"]))
                elif "functionCall" in part:
                    call = _tool_call(part["functionCall"], part.get("thoughtSignature"))
                    call["index"] = self._tool_count
                    self._tool_count += 1
                    out.append(tool_call_chunk(call))
        reason = candidate.get("finishReason")
        if reason:
            finish_reason = FINISH_REASONS.get(reason, "stop")
            if self._tool_count and finish_reason == "stop":
                finish_reason = "tool_calls"
            self.finish_reason = finish_reason
            out.append(finish_chunk(finish_reason))

    def end(self) -> None:
        if self.finish_reason is None:
            raise UpstreamError("upstream_error", f"{PROVIDER} stream ended before it was complete")


# --------------------------------------------------------------------------- adapter


class GoogleAdapter(WireAdapter):
    provider = PROVIDER
    build_request = staticmethod(build_request)
    parse_response = staticmethod(parse_response)
    parse_error = staticmethod(parse_error)
    error_in = staticmethod(error_in)
    stream_state = GoogleStreamState

    def endpoint(self, target: Target, stream: bool) -> tuple[str, dict[str, str]]:
        model = target.model.removeprefix("models/")
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{target.base_url.rstrip('/')}/v1beta/models/{model}:{method}", {
            "x-goog-api-key": target.api_key,
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
