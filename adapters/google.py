"""Google Gemini API (generateContent) <-> OpenAI chat.

POST `{base_url}/v1beta/models/{model}:generateContent`, streams
`...:streamGenerateContent?alt=sse` (each SSE event is a whole GenerateContentResponse;
the stream ends with the body, there is no end marker), header `x-goog-api-key`.

Request: system/developer messages become `systemInstruction`; assistant turns are
role `model`; tool results are `functionResponse` parts of a user turn (named after
the call they answer, since Gemini matches by name); consecutive turns of the same
role are merged; sampling options go to `generationConfig`.

JSON Schema (function parameters, `response_format.json_schema`) is translated into
Gemini's Schema (adapters/schema.py); what it cannot express is a 400 naming it.
`n` is `candidateCount`, `logprobs` / `top_logprobs` are `responseLogprobs` /
`logprobs` (answered as OpenAI `logprobs.content`), `reasoning_effort` is a
`thinkingConfig.thinkingBudget`; parameters Gemini cannot honour are refused
(adapters/params.py).

Embeddings: `:batchEmbedContents` (100 texts a call; more are split into concurrent
calls). Images: `:generateContent` of an image model with `responseModalities:
["IMAGE"]`, one call per image (image models answer one image a call), `size` as
`imageConfig.aspectRatio`.

Response: Gemini's function calls carry no id (or an id only on some surfaces), so
tool calls get a fresh `call_...` id when Gemini gives none; a `thoughtSignature`
travels in `tool_calls[i].extra_content.google.thought_signature` (the convention of
Google's own OpenAI-compatible endpoint) and is handed back on the next turn.

Usage: `promptTokenCount` includes cached tokens; output is candidates + thoughts.
"""

from __future__ import annotations

import mimetypes
import os
import time
from collections import deque
from math import gcd
from typing import Any

import orjson

from .base import Completion, Embeddings, GeneratedImages, Target, Usage
from .common import (
    check_parameters,
    classify,
    content_chunk,
    dumps_str,
    encode_embedding,
    error_object,
    estimate_tokens,
    finish_chunk,
    gather_all,
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
from .schema import SchemaError, to_gemini_schema

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

THINKING_BUDGETS = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
EMBED_BATCH = 100  # texts per batchEmbedContents call (the API's limit)
# OpenAI image sizes Gemini can honour, as its aspect ratios (it picks the pixels).
ASPECT_RATIOS = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
RATIO_TOLERANCE = 0.03  # Gemini's own sizes are near, not exactly at, their ratios (1344x768 is 16:9)
IMAGE_ONLY_OPENAI = ("quality", "style", "background", "output_format", "output_compression", "moderation")

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
    url, data_url = image_url(part, PROVIDER)
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
        result = orjson.loads(text) if text else text
    except orjson.JSONDecodeError:
        result = text
    if not isinstance(result, dict):
        # Gemini wants an object: "output" is its documented key for anything else
        # (a JSON array or scalar stays JSON, other text stays text).
        result = {"output": result}
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
    n = get("n")
    if n is not None and n != 1:
        config["candidateCount"] = n
    if get("logprobs"):
        config["responseLogprobs"] = True
        if get("top_logprobs"):
            config["logprobs"] = body["top_logprobs"]
    effort = get("reasoning_effort")
    if effort is not None:
        budget = THINKING_BUDGETS.get(effort)
        if budget is None:
            raise invalid(f"reasoning_effort {effort!r} is not supported by {PROVIDER}")
        config["thinkingConfig"] = {"thinkingBudget": budget}
    response_format = get("response_format")
    if response_format:
        kind = response_format.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            config["responseMimeType"] = "application/json"
            schema = (response_format.get("json_schema") or {}).get("schema")
            if schema:
                converted = _schema(schema, "response_format.json_schema.schema", root_object=True)
                if converted is not None:
                    config["responseSchema"] = converted
    return config


def _schema(schema: Any, where: str, root_object: bool = False) -> dict[str, Any] | None:
    try:
        return to_gemini_schema(schema, root_object=root_object)
    except SchemaError as error:
        raise invalid(f"{where}: {error}") from None


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    declarations = []
    for index, tool in enumerate(tools):
        function = tool.get("function") or {}
        declaration: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            parameters = _schema(function["parameters"], f"tools[{index}].function.parameters", root_object=True)
            if parameters is not None:  # an object without properties: no parameters
                declaration["parameters"] = parameters
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
    check_parameters(PROVIDER, body)
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


def _token_logprob(candidate: dict[str, Any]) -> dict[str, Any]:
    token = candidate.get("token") or ""
    return {"token": token, "logprob": candidate.get("logProbability", 0.0), "bytes": list(token.encode())}


def logprobs_of(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI `logprobs` ({"content": [...]}) of a Gemini `logprobsResult`."""
    if not result:
        return None
    tops = result.get("topCandidates") or ()
    content = []
    for i, chosen in enumerate(result.get("chosenCandidates") or ()):
        entry = _token_logprob(chosen)
        entry["top_logprobs"] = (
            [_token_logprob(c) for c in tops[i].get("candidates") or ()] if i < len(tops) else []
        )
        content.append(entry)
    return {"content": content, "refusal": None}


def _choice(candidate: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """(message, finish reason, logprobs) of one candidate."""
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
    return message, finish_reason, logprobs_of(candidate.get("logprobsResult"))


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
    message, finish_reason, logprobs = _choice(candidates[0])
    more = None
    if len(candidates) > 1:
        more = []
        for position, candidate in enumerate(candidates[1:], start=1):
            other, reason, other_logprobs = _choice(candidate)
            more.append({"index": candidate.get("index") or position, "message": other,
                         "finish_reason": reason, "logprobs": other_logprobs})
    return Completion(
        message=message, finish_reason=finish_reason, usage=parse_usage(data.get("usageMetadata")),
        logprobs=logprobs, more_choices=more,
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

    __slots__ = ("_finished", "_tool_count", "done", "finish_reason", "started", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False  # Gemini has no end marker: the body's end is the end
        self.started = False
        self._tool_count: dict[int, int] = {}  # choice index -> tool calls so far
        self._finished: set[int] = set()

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
        for position, candidate in enumerate(candidates):
            self._candidate(candidate.get("index") or position, candidate, out)

    def _candidate(self, index: int, candidate: dict[str, Any], out: deque[dict[str, Any]]) -> None:
        content = candidate.get("content")
        if content:
            logprobs = logprobs_of(candidate.get("logprobsResult"))
            for part in content.get("parts") or ():
                if "text" in part:
                    if part["text"] and not part.get("thought"):
                        chunk = content_chunk(part["text"])
                        if index:
                            chunk["index"] = index
                        if logprobs is not None:
                            chunk["logprobs"], logprobs = logprobs, None
                        out.append(chunk)
                elif "functionCall" in part:
                    call = _tool_call(part["functionCall"], part.get("thoughtSignature"))
                    calls = self._tool_count.get(index, 0)
                    call["index"] = calls
                    self._tool_count[index] = calls + 1
                    chunk = tool_call_chunk(call)
                    if index:
                        chunk["index"] = index
                    out.append(chunk)
        reason = candidate.get("finishReason")
        if reason and index not in self._finished:
            self._finished.add(index)
            finish_reason = FINISH_REASONS.get(reason, "stop")
            if self._tool_count.get(index) and finish_reason == "stop":
                finish_reason = "tool_calls"
            if index == 0 or self.finish_reason is None:
                self.finish_reason = finish_reason
            chunk = finish_chunk(finish_reason)
            if index:
                chunk["index"] = index
            out.append(chunk)

    def end(self) -> None:
        if self.finish_reason is None:
            raise UpstreamError("upstream_error", f"{PROVIDER} stream ended before it was complete")


# ------------------------------------------------------------------ embeddings, images


def embedding_texts(body: dict[str, Any]) -> list[str]:
    value = body["input"]
    texts = [value] if isinstance(value, str) else value
    if not all(isinstance(text, str) for text in texts):
        raise invalid(f"{PROVIDER} embeds text only: 'input' must be a string or an array of strings, "
                      "not token ids")
    return texts


def embed_request(texts: list[str], model: str, dimensions: int | None) -> dict[str, Any]:
    name = "models/" + model.removeprefix("models/")
    extra = {"outputDimensionality": dimensions} if dimensions else {}
    return {"requests": [{"model": name, "content": {"parts": [{"text": text}]}, **extra} for text in texts]}


def parse_embeddings(data: dict[str, Any]) -> tuple[list[list[float]], int | None]:
    """(vectors, prompt tokens if Gemini counted them) of a batchEmbedContents answer."""
    vectors = [item["values"] for item in data["embeddings"]]
    meta = data.get("usageMetadata")
    tokens = meta.get("promptTokenCount") if isinstance(meta, dict) else None
    return vectors, tokens


def aspect_ratio(size: str) -> str:
    """Gemini's aspect ratio for an OpenAI `size`: the supported ratio within
    `RATIO_TOLERANCE` of width/height ("1536x1024" -> "3:2", "1792x1024" -> "16:9")."""
    width, _, height = size.partition("x")
    try:
        w, h = int(width), int(height)
    except ValueError:
        raise invalid(f"size {size!r} is not WIDTHxHEIGHT") from None
    if w <= 0 or h <= 0:
        raise invalid(f"size {size!r} is not WIDTHxHEIGHT")
    wanted = w / h
    best = min(ASPECT_RATIOS, key=lambda r: abs(_ratio(r) / wanted - 1))
    if abs(_ratio(best) / wanted - 1) > RATIO_TOLERANCE:
        divisor = gcd(w, h)
        raise invalid(f"size {size!r} (aspect ratio {w // divisor}:{h // divisor}) is not supported by {PROVIDER}; "
                      f"sizes with an aspect ratio of {', '.join(sorted(ASPECT_RATIOS))} are")
    return best


def _ratio(ratio: str) -> float:
    w, _, h = ratio.partition(":")
    return int(w) / int(h)


def image_request(body: dict[str, Any]) -> dict[str, Any]:
    for name in IMAGE_ONLY_OPENAI:
        if body.get(name) is not None:
            raise invalid(f"'{name}' is not supported by {PROVIDER} image models")
    config: dict[str, Any] = {"responseModalities": ["IMAGE"]}
    size = body.get("size")
    if size and size != "auto":
        config["imageConfig"] = {"aspectRatio": aspect_ratio(size)}
    return {"contents": [{"role": "user", "parts": [{"text": body["prompt"]}]}], "generationConfig": config}


def parse_image(data: dict[str, Any]) -> tuple[list[tuple[str, str]], Usage]:
    """([(mime type, base64 data)], usage) of an image model's generateContent answer."""
    candidates = data.get("candidates")
    if not candidates:
        raise _blocked(data)
    candidate = candidates[0]
    images = [
        (part["inlineData"].get("mimeType") or "image/png", part["inlineData"]["data"])
        for part in (candidate.get("content") or {}).get("parts") or ()
        if "inlineData" in part and not part.get("thought")
    ]
    if not images:
        reason = candidate.get("finishReason")
        if FINISH_REASONS.get(reason) == "content_filter":
            raise UpstreamError("content_filtered", f"{PROVIDER} refused to generate the image ({reason})")
        raise UpstreamError("upstream_error", f"{PROVIDER} answered without an image ({reason or 'no reason'})")
    return images, parse_usage(data.get("usageMetadata"))


# --------------------------------------------------------------------------- adapter


class GoogleAdapter(WireAdapter):
    provider = PROVIDER
    build_request = staticmethod(build_request)
    parse_response = staticmethod(parse_response)
    parse_error = staticmethod(parse_error)
    error_in = staticmethod(error_in)
    stream_state = GoogleStreamState

    def endpoint(self, target: Target, stream: bool) -> tuple[str, dict[str, str]]:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return self._url(target, method), _headers(target, stream)

    @staticmethod
    def _url(target: Target, method: str) -> str:
        model = target.model.removeprefix("models/")
        return f"{target.base_url.rstrip('/')}/v1beta/models/{model}:{method}"

    async def embed(self, body: dict[str, Any], target: Target) -> Embeddings:
        texts = embedding_texts(body)
        url, headers = self._url(target, "batchEmbedContents"), _headers(target, False)
        dimensions = body.get("dimensions")
        batches = [texts[i : i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]
        answers = await gather_all([
            self.call_json(url, headers, embed_request(batch, target.model, dimensions), target, parse_embeddings)
            for batch in batches
        ])
        encoding = body.get("encoding_format")
        data = []
        counted: int | None = 0
        for vectors, tokens in answers:
            for vector in vectors:
                data.append({"object": "embedding", "index": len(data),
                             "embedding": encode_embedding(vector, encoding)})
            counted = None if tokens is None or counted is None else counted + tokens
        if len(data) != len(texts):
            raise malformed(PROVIDER)
        if counted is None:  # Gemini did not count: estimate, and say so
            return Embeddings(data, Usage(input_tokens=estimate_tokens(texts)), estimated=True)
        return Embeddings(data, Usage(input_tokens=counted))

    async def generate_images(self, body: dict[str, Any], target: Target) -> GeneratedImages:
        payload = image_request(body)
        url, headers = self._url(target, "generateContent"), _headers(target, False)
        answers = await gather_all([
            self.call_json(url, headers, payload, target, parse_image) for _ in range(body.get("n") or 1)
        ])
        as_url = body.get("response_format") == "url"
        data = []
        usage = Usage()
        for images, used in answers:
            usage.input_tokens += used.input_tokens
            usage.output_tokens += used.output_tokens
            usage.cached_tokens += used.cached_tokens
            for mime, b64 in images:
                data.append({"url": f"data:{mime};base64,{b64}"} if as_url else {"b64_json": b64})
        usage.images = len(data)
        return GeneratedImages(data, usage, int(time.time()))


def _headers(target: Target, stream: bool) -> dict[str, str]:
    return {
        "x-goog-api-key": target.api_key,
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
    }
