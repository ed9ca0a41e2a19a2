"""Gemini's wire protocol (Generative Language API): `POST /{version}/models/{model}:generateContent`,
`:streamGenerateContent` (SSE with `?alt=sse`, else one JSON array), `:countTokens`, and
`GET /{version}/models`. Versions v1beta, v1 and v1alpha are all served (the google-genai
SDK picks one).

The key comes in `x-goog-api-key` or `?key=`; the key "invalid" or none gets a 401
`UNAUTHENTICATED` error (the real API answers 400 `API_KEY_INVALID` / 403 instead; the
details carry the `API_KEY_INVALID` reason either way). Errors are
`{"error": {"code", "message", "status"}}`. Every stream event is a whole
GenerateContentResponse; the last carries `finishReason` and `usageMetadata`, whose
`promptTokenCount` includes `cachedContentTokenCount`. Request fields are read in
camelCase or snake_case, as the API accepts both.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, ClassVar

import orjson
from aiohttp import web

from .serving import (
    JSON_HEADERS,
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

MODELS = (
    ("gemini-1.5-pro", "Gemini 1.5 Pro", 2_097_152),
    ("gemini-1.5-flash", "Gemini 1.5 Flash", 1_048_576),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576),
)
FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS"}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    401: "API key not valid. Please pass a valid API key.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline exceeded",
}
SSE_END = b"\r\n\r\n"  # the real API frames its events with CRLF

_ids = itertools.count(1)
_ID_PREFIX = "sim" + os.urandom(4).hex()


def _error_body(status: int, message: str | None, retry_after: float | None = None) -> dict[str, Any]:
    name = STATUS_NAMES.get(status) or ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    text = message or DEFAULT_MESSAGES.get(status) or f"Simulated error {status}."
    error: dict[str, Any] = {"code": status, "message": text, "status": name}
    if status == 401:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    elif retry_after is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after_header(retry_after)}s"}
        ]
    return {"error": error}


def _field(container: dict[str, Any], camel: str, snake: str) -> Any:
    value = container.get(camel)
    return container.get(snake) if value is None else value


def _contents(value: Any) -> list[Any] | None:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, str):
        return [{"role": "user", "parts": [{"text": value}]}]
    return value if isinstance(value, list) else None


class GoogleWire:
    name: ClassVar[str] = "google"

    def authenticate(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key or not key.strip() or key.strip() == "invalid":
            return self.error(401)
        return None

    def error(self, status: int, message: str | None = None, retry_after: float | None = None) -> web.Response:
        if message == "invalid_json":
            message = "Invalid JSON payload received. Unexpected token."
        headers = JSON_HEADERS
        if retry_after is not None:
            headers = {**JSON_HEADERS, "retry-after": retry_after_header(retry_after)}
        return json_response(_error_body(status, message, retry_after), status, headers)

    def parse(self, request: web.Request, body: dict[str, Any], counting: bool = False) -> Conversation | web.Response:
        model, _, action = request.match_info["target"].rpartition(":")
        model = model.removeprefix("models/")
        sse = request.query.get("alt") == "sse"
        if counting and "contents" not in body:
            # countTokens also takes a whole GenerateContentRequest.
            inner = _field(body, "generateContentRequest", "generate_content_request")
            if isinstance(inner, dict):
                body = inner
        contents = _contents(body.get("contents"))
        if not contents:
            return self.error(400, "* GenerateContentRequest.contents: contents is not specified")

        tokens = REPLY_PRIMING
        system_text = ""
        system = _field(body, "systemInstruction", "system_instruction")
        if system:
            parts = system.get("parts") if isinstance(system, dict) else system
            tokens += MESSAGE_OVERHEAD + content_tokens(parts)
            system_text = content_text(parts)
        prompt = ""
        for index, content in enumerate(contents):
            if not isinstance(content, dict):
                return self.error(400, f"* GenerateContentRequest.contents[{index}]: invalid Content")
            role = content.get("role") or "user"
            if role not in ("user", "model", "function", "tool"):
                return self.error(400, f"Please use a valid role: user, model. (contents[{index}].role: {role!r})")
            parts = content.get("parts")
            tokens += MESSAGE_OVERHEAD + content_tokens(parts if isinstance(parts, list) else [])
            if role == "user":
                prompt = content_text(parts if isinstance(parts, list) else [])
        if body.get("tools"):
            tokens += json_tokens(body["tools"])

        config = _field(body, "generationConfig", "generation_config") or {}
        if not isinstance(config, dict):
            return self.error(400, "* GenerateContentRequest.generation_config: invalid GenerationConfig")
        limit = _field(config, "maxOutputTokens", "max_output_tokens")
        if limit is not None and not positive_int(limit):
            return self.error(400, "* GenerateContentRequest.generation_config.max_output_tokens: must be positive")
        stop = _field(config, "stopSequences", "stop_sequences") or ()
        if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
            return self.error(400, "* GenerateContentRequest.generation_config.stop_sequences: invalid value")
        return Conversation(
            model=model,
            prompt=prompt,
            input_tokens=tokens,
            stream=action == "streamGenerateContent" and sse,
            max_tokens=limit,
            stop=tuple(stop),
            system_text=system_text,
            system_tokens=count_tokens(system_text),
            # streamGenerateContent without alt=sse answers one JSON array, unpaced.
            options={"array": action == "streamGenerateContent" and not sse},
        )

    @staticmethod
    def _usage(usage: Metered) -> dict[str, Any]:
        return {
            "promptTokenCount": usage.input_tokens,
            "candidatesTokenCount": usage.output_tokens,
            "totalTokenCount": usage.input_tokens + usage.output_tokens,
            "cachedContentTokenCount": usage.cached_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.input_tokens}],
        }

    def plain(self, conv: Conversation, reply: Reply, usage: Metered) -> web.Response:
        if conv.options.get("array"):
            return self.json_array(conv, reply, usage)
        return json_response(
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": reply.text}], "role": "model"},
                        "finishReason": FINISH[reply.finish],
                        "index": 0,
                    }
                ],
                "usageMetadata": self._usage(usage),
                "modelVersion": conv.model,
                "responseId": f"{_ID_PREFIX}{next(_ids):010x}",
            }
        )

    def _chunks(self, conv: Conversation, reply: Reply, usage: Metered) -> list[bytes]:
        response_id = f"{_ID_PREFIX}{next(_ids):010x}"
        # Every event but the last differs only in its text: splice it into a fixed frame.
        prefix = b'{"candidates":[{"content":{"parts":[{"text":'
        suffix = b'}],"role":"model"},"index":0}],"modelVersion":' + orjson.dumps(conv.model)
        suffix += b',"responseId":"' + response_id.encode() + b'"}'
        pieces = reply.pieces or ("",)
        chunks = [prefix + orjson.dumps(piece) + suffix for piece in pieces[:-1]]
        last = {
            "candidates": [
                {
                    "content": {"parts": [{"text": pieces[-1]}], "role": "model"},
                    "finishReason": FINISH[reply.finish],
                    "index": 0,
                }
            ],
            "usageMetadata": self._usage(usage),
            "modelVersion": conv.model,
            "responseId": response_id,
        }
        chunks.append(orjson.dumps(last))
        return chunks

    def stream(self, conv: Conversation, reply: Reply, usage: Metered) -> StreamPlan:
        chunks = self._chunks(conv, reply, usage)
        return StreamPlan(head=[], tokens=[b"data: " + chunk + SSE_END for chunk in chunks], tail=[])

    def stream_error(self, status: int, message: str | None) -> bytes:
        return b"data: " + orjson.dumps(_error_body(status, message)) + SSE_END

    def malformed_event(self) -> bytes:
        return b'data: {"candidates": [{"content": {"parts": [{"text": ' + SSE_END

    def json_array(self, conv: Conversation, reply: Reply, usage: Metered) -> web.Response:
        """`streamGenerateContent` without `alt=sse`: the same responses as one JSON array."""
        return web.Response(body=b"[" + b",\r\n".join(self._chunks(conv, reply, usage)) + b"]", headers=JSON_HEADERS)


WIRE = GoogleWire()


def _model_entry(model: str, display: str, context: int) -> dict[str, Any]:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": display,
        "description": f"Simulated {display}",
        "inputTokenLimit": context,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 40,
        "maxTemperature": 2,
    }


_MODEL_ENTRIES = {model: _model_entry(model, display, context) for model, display, context in MODELS}
_MODEL_LIST = orjson.dumps({"models": list(_MODEL_ENTRIES.values())})


def is_google(request: web.Request) -> bool:
    """Whether a request on a path Gemini shares with OpenAI (`/v1/models`) is Gemini's."""
    return "x-goog-api-key" in request.headers or "key" in request.query


async def model_action(request: web.Request) -> web.StreamResponse:
    action = request.match_info["target"].rpartition(":")[2]
    if action in ("generateContent", "streamGenerateContent"):
        return await handle(WIRE, request)
    if action == "countTokens":
        return await _count_tokens(request)
    return admit_get(WIRE, request) or WIRE.error(404, f"Method {action!r} is not supported by the simulator.")


async def _count_tokens(request: web.Request) -> web.Response:
    conv = await admit(WIRE, request, counting=True)
    if not isinstance(conv, Conversation):
        return conv
    details = [{"modality": "TEXT", "tokenCount": conv.input_tokens}]
    return json_response({"totalTokens": conv.input_tokens, "promptTokensDetails": details})


async def list_models(request: web.Request) -> web.Response:
    return admit_get(WIRE, request) or web.Response(body=_MODEL_LIST, content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    denied = admit_get(WIRE, request)
    if denied is not None:
        return denied
    model = request.match_info["model"].removeprefix("models/")
    entry = _MODEL_ENTRIES.get(model)
    return json_response(entry) if entry else WIRE.error(404, f"models/{model} is not found for API version v1beta")
