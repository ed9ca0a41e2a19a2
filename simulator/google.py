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

Function calling (see simulator/tools.py for when and which): `functionDeclarations`
with `parameters` (Gemini Schema) or `parametersJsonSchema`, `toolConfig`
AUTO/ANY/NONE and `allowedFunctionNames`; calls come as whole `functionCall` parts
(no id, finish `STOP`), one stream event per call, the last carrying the finish and
usage. As Gemini does, a `functionResponse` turn must follow a turn of function calls
with as many responses as calls. Images come in as `inlineData` (base64, a supported
type) or `fileData`. JSON mode (`responseMimeType: application/json`) answers JSON
built from `responseSchema` / `responseJsonSchema`; `candidateCount` gives several
candidates (streamed side by side), `responseLogprobs` / `logprobs` a
`logprobsResult`. The content_filter fault answers `finishReason: SAFETY` with no
content.

Embeddings: `:embedContent` and `:batchEmbedContents` (at most 100 requests) of
text-embedding-004 (768 dims) and gemini-embedding-001 (3072), `outputDimensionality`
honoured; batch answers of gemini-embedding-001 carry `usageMetadata`, those of
text-embedding-004 do not (so clients must cope with both). Image generation:
`:generateContent` of an image model (gemini-2.5-flash-image) with
`responseModalities` including IMAGE answers an `inlineData` PNG at the size Gemini
uses for the `imageConfig.aspectRatio` (1024x1024 for 1:1), 1290 output tokens per
image; other models refuse the IMAGE modality.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, ClassVar

import orjson
from aiohttp import web

from . import media
from .serving import (
    JSON_HEADERS,
    Conversation,
    Metered,
    StreamPlan,
    admit,
    admit_get,
    handle,
    handle_unary,
    json_response,
    positive_int,
    retry_after_header,
)
from .text import (
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    Reply,
    content_text,
    content_tokens,
    count_tokens,
    json_tokens,
    piece_logprob,
    top_alternatives,
)
from .tools import ToolChoice, ToolSpec

MODELS = (
    ("gemini-1.5-pro", "Gemini 1.5 Pro", 2_097_152),
    ("gemini-1.5-flash", "Gemini 1.5 Flash", 1_048_576),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576),
    ("gemini-2.5-flash-image", "Gemini 2.5 Flash Image", 32_768),
    ("text-embedding-004", "Text Embedding 004", 2_048),
    ("gemini-embedding-001", "Gemini Embedding 001", 2_048),
)
FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP",
          "content_filter": "SAFETY"}
EMBEDDING_MODELS = {"text-embedding-004": 768, "gemini-embedding-001": 3072}
EMBED_BATCH_LIMIT = 100
IMAGE_MODELS = ("gemini-2.5-flash-image", "gemini-2.0-flash-preview-image-generation")
IMAGE_TOKENS = 1290  # output tokens per generated image
# aspect ratio -> (width, height) Gemini generates
IMAGE_SIZES = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184), "4:3": (1184, 864),
    "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344), "16:9": (1344, 768), "21:9": (1536, 672),
}
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
            parts = parts if isinstance(parts, list) else []
            tokens += MESSAGE_OVERHEAD + content_tokens(parts)
            if role == "user" and any(isinstance(p, dict) and "text" in p for p in parts):
                prompt = content_text(parts)
            problem = _part_problem(parts, index)
            if problem is not None:
                return self.error(400, problem)
        problem = _function_turn_problem(contents)
        if problem is not None:
            return self.error(400, problem)
        tools = body.get("tools")
        if tools:
            tokens += json_tokens(tools)
        specs = _tool_specs(tools)
        choice = _tool_choice(_field(body, "toolConfig", "tool_config"))
        last_parts = contents[-1].get("parts") if isinstance(contents[-1], dict) else None
        after_result = isinstance(last_parts, list) and any(
            isinstance(p, dict) and ("functionResponse" in p or "function_response" in p) for p in last_parts)

        config = _field(body, "generationConfig", "generation_config") or {}
        if not isinstance(config, dict):
            return self.error(400, "* GenerateContentRequest.generation_config: invalid GenerationConfig")
        limit = _field(config, "maxOutputTokens", "max_output_tokens")
        if limit is not None and not positive_int(limit):
            return self.error(400, "* GenerateContentRequest.generation_config.max_output_tokens: must be positive")
        stop = _field(config, "stopSequences", "stop_sequences") or ()
        if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
            return self.error(400, "* GenerateContentRequest.generation_config.stop_sequences: invalid value")
        modalities = [str(m).upper() for m in _field(config, "responseModalities", "response_modalities") or ()]
        image_out = "IMAGE" in modalities
        if image_out and model not in IMAGE_MODELS:
            return self.error(400, "Model does not support the requested response modalities: image")
        ratio = (_field(config, "imageConfig", "image_config") or {}).get("aspectRatio") or "1:1"
        if image_out and ratio not in IMAGE_SIZES:
            return self.error(400, f"* GenerateContentRequest.generation_config.image_config.aspect_ratio: "
                              f"unsupported aspect ratio {ratio!r}")
        mime = _field(config, "responseMimeType", "response_mime_type")
        schema = _field(config, "responseSchema", "response_schema") or _field(
            config, "responseJsonSchema", "response_json_schema")
        if schema is not None and mime != "application/json":
            return self.error(400, "* GenerateContentRequest.generation_config.response_mime_type: "
                              "response_schema requires response_mime_type application/json")
        count = _field(config, "candidateCount", "candidate_count") or 1
        if not positive_int(count) or count > 8:
            return self.error(400, "* GenerateContentRequest.generation_config.candidate_count: must be 1-8")
        logprobs = None
        if _field(config, "responseLogprobs", "response_logprobs"):
            logprobs = config.get("logprobs") or 0
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
            options={"array": action == "streamGenerateContent" and not sse,
                     "image": IMAGE_SIZES[ratio] if image_out else None},
            tools=specs,
            tool_choice=choice,
            after_tool_result=after_result,
            json_mode=mime == "application/json",
            json_schema=schema,
            n=count,
            logprobs=logprobs,
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
        image = conv.options.get("image")
        if image is not None and reply.finish != "content_filter":
            return self._image(conv, usage, image)
        return json_response(
            {
                "candidates": [_candidate(conv, r, i) for i, r in enumerate((reply, *reply.more))],
                "usageMetadata": self._usage(usage),
                "modelVersion": conv.model,
                "responseId": f"{_ID_PREFIX}{next(_ids):010x}",
            }
        )

    def _image(self, conv: Conversation, usage: Metered, size: tuple[int, int]) -> web.Response:
        rgb = media.colour(conv.model, conv.prompt, 0)
        part = {"inlineData": {"mimeType": "image/png", "data": media.png_b64(size[0], size[1], rgb)}}
        meta = self._usage(Metered(usage.input_tokens, IMAGE_TOKENS, 0, 0))
        meta["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": IMAGE_TOKENS}]
        return json_response({
            "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": meta,
            "modelVersion": conv.model,
            "responseId": f"{_ID_PREFIX}{next(_ids):010x}",
        })

    def _chunks(self, conv: Conversation, reply: Reply, usage: Metered) -> list[bytes]:
        response_id = f"{_ID_PREFIX}{next(_ids):010x}"
        if reply.tool_calls or reply.more or conv.logprobs is not None or reply.finish == "content_filter":
            return self._event_chunks(conv, reply, usage, response_id)
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

    def _event_chunks(self, conv: Conversation, reply: Reply, usage: Metered, response_id: str) -> list[bytes]:
        """Stream events built one by one: tool calls, several candidates, logprobs."""
        tail = {"usageMetadata": self._usage(usage), "modelVersion": conv.model, "responseId": response_id}
        head = {"modelVersion": conv.model, "responseId": response_id}
        if reply.tool_calls:
            calls = reply.tool_calls
            events = []
            for number, call in enumerate(calls):
                candidate: dict[str, Any] = {"content": {"parts": [_call_part(call)], "role": "model"}, "index": 0}
                last = number == len(calls) - 1
                if last:
                    candidate["finishReason"] = FINISH[reply.finish]
                events.append(orjson.dumps({"candidates": [candidate], **(tail if last else head)}))
            return events
        if reply.finish == "content_filter":
            blocked = {"finishReason": "SAFETY", "index": 0, "safetyRatings": _SAFETY_RATINGS}
            return [orjson.dumps({"candidates": [blocked], **tail})]
        replies = (reply, *reply.more)
        steps = max(len(r.pieces) for r in replies) or 1
        events = []
        for position in range(steps):
            candidates = []
            for index, r in enumerate(replies):
                piece = r.pieces[position] if position < len(r.pieces) else ""
                candidate = {"content": {"parts": [{"text": piece}], "role": "model"}, "index": index}
                if conv.logprobs is not None and piece:
                    candidate["logprobsResult"] = _logprobs_result([piece], conv.logprobs, position)
                if position == steps - 1:
                    candidate["finishReason"] = FINISH[r.finish]
                candidates.append(candidate)
            events.append(orjson.dumps({"candidates": candidates, **(tail if position == steps - 1 else head)}))
        return events

    def stream(self, conv: Conversation, reply: Reply, usage: Metered) -> StreamPlan:
        chunks = self._chunks(conv, reply, usage)
        return StreamPlan(head=[], tokens=[b"data: " + chunk + SSE_END for chunk in chunks], tail=[],
                          awkward=bool(reply.tool_calls) or conv.json_mode)

    def stream_error(self, status: int, message: str | None) -> bytes:
        return b"data: " + orjson.dumps(_error_body(status, message)) + SSE_END

    def malformed_event(self) -> bytes:
        return b'data: {"candidates": [{"content": {"parts": [{"text": ' + SSE_END

    def json_array(self, conv: Conversation, reply: Reply, usage: Metered) -> web.Response:
        """`streamGenerateContent` without `alt=sse`: the same responses as one JSON array."""
        return web.Response(body=b"[" + b",\r\n".join(self._chunks(conv, reply, usage)) + b"]", headers=JSON_HEADERS)


_SAFETY_RATINGS = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]


def _call_part(call: Any) -> dict[str, Any]:
    return {"functionCall": {"name": call.name, "args": call.args if isinstance(call.args, dict) else {}}}


def _logprobs_result(pieces: Any, top_k: int, start: int = 0) -> dict[str, Any]:
    chosen = []
    tops = []
    for offset, piece in enumerate(pieces):
        position = start + offset
        chosen.append({"token": piece, "logProbability": piece_logprob(piece, position)})
        tops.append({"candidates": [{"token": token, "logProbability": logprob}
                                    for token, logprob in top_alternatives(piece, position, top_k)]})
    result: dict[str, Any] = {"chosenCandidates": chosen}
    if top_k:
        result["topCandidates"] = tops
    return result


def _candidate(conv: Conversation, reply: Reply, index: int) -> dict[str, Any]:
    if reply.finish == "content_filter":
        return {"finishReason": "SAFETY", "index": index, "safetyRatings": _SAFETY_RATINGS}
    if reply.tool_calls:
        parts = [_call_part(call) for call in reply.tool_calls if call.args is not None]
        if not parts:  # cut before a whole call was produced: Gemini sends none
            parts = [{"text": ""}]
    else:
        parts = [{"text": reply.text}]
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "finishReason": FINISH[reply.finish],
                                 "index": index}
    if conv.logprobs is not None:
        candidate["logprobsResult"] = _logprobs_result(reply.pieces, conv.logprobs)
    return candidate


def _tool_specs(tools: Any) -> list[ToolSpec]:
    specs = []
    for tool in tools or ():
        if not isinstance(tool, dict):
            continue
        for declaration in _field(tool, "functionDeclarations", "function_declarations") or ():
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                schema = declaration.get("parameters") or _field(
                    declaration, "parametersJsonSchema", "parameters_json_schema")
                specs.append(ToolSpec(declaration["name"], schema))
    return specs


def _tool_choice(config: Any) -> ToolChoice:
    calling = _field(config, "functionCallingConfig", "function_calling_config") if isinstance(config, dict) else None
    if not isinstance(calling, dict):
        return ToolChoice()
    mode = str(calling.get("mode") or "AUTO").upper()
    names = tuple(_field(calling, "allowedFunctionNames", "allowed_function_names") or ())
    if mode == "NONE":
        return ToolChoice("none")
    if mode == "ANY":
        return ToolChoice("named", names) if len(names) == 1 else ToolChoice("required")
    return ToolChoice()


def _part_problem(parts: list[Any], index: int) -> str | None:
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            return f"* GenerateContentRequest.contents[{index}].parts[{j}]: invalid Part"
        inline = _field(part, "inlineData", "inline_data")
        if inline is not None:
            mime = _field(inline, "mimeType", "mime_type")
            if not isinstance(mime, str) or "/" not in mime:
                return f"* GenerateContentRequest.contents[{index}].parts[{j}].inline_data.mime_type: required"
            if not media.valid_base64(inline.get("data")):
                return (f"Invalid value at 'contents[{index}].parts[{j}].inline_data.data' (TYPE_BYTES), "
                        "Base64 decoding failed")
        file_data = _field(part, "fileData", "file_data")
        if file_data is not None and not _field(file_data, "fileUri", "file_uri"):
            return f"* GenerateContentRequest.contents[{index}].parts[{j}].file_data.file_uri: required"
    return None


def _function_turn_problem(contents: list[Any]) -> str | None:
    """Gemini's rule: function responses come right after the turn of calls, one per call."""
    calls = 0
    for content in contents:
        parts = content.get("parts") if isinstance(content, dict) else None
        parts = parts if isinstance(parts, list) else []
        responses = sum(1 for p in parts if isinstance(p, dict) and ("functionResponse" in p
                                                                      or "function_response" in p))
        if responses and responses != calls:
            return ("Please ensure that the number of function response parts is equal to the number of function "
                    "call parts of the function call turn.")
        calls = sum(1 for p in parts if isinstance(p, dict) and ("functionCall" in p or "function_call" in p))
    return None


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
    if action in ("embedContent", "batchEmbedContents"):
        return await handle_unary(WIRE, request, _parse_embed, _answer_embed)
    return admit_get(WIRE, request) or WIRE.error(404, f"Method {action!r} is not supported by the simulator.")


def _parse_embed(request: web.Request, body: dict[str, Any]) -> Any:
    target, _, action = request.match_info["target"].rpartition(":")
    model = target.removeprefix("models/")
    full = EMBEDDING_MODELS.get(model)
    if full is None:
        return WIRE.error(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                          f"{action}.")
    requests = body.get("requests") if action == "batchEmbedContents" else [body]
    if not isinstance(requests, list) or not requests:
        return WIRE.error(400, "* BatchEmbedContentsRequest.requests: requests is required")
    if len(requests) > EMBED_BATCH_LIMIT:
        return WIRE.error(400, f"* BatchEmbedContentsRequest.requests: at most {EMBED_BATCH_LIMIT} requests can be "
                          "in one batch")
    items = []
    for index, item in enumerate(requests):
        if not isinstance(item, dict):
            return WIRE.error(400, f"* BatchEmbedContentsRequest.requests[{index}]: invalid")
        named = item.get("model")
        if action == "batchEmbedContents" and named != f"models/{model}":
            return WIRE.error(400, f"* BatchEmbedContentsRequest.requests[{index}].model: the model must be "
                              f"models/{model}, the model of the batch")
        content = item.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        text = content_text(parts) if isinstance(parts, list) else ""
        if not text:
            return WIRE.error(400, f"* EmbedContentRequest.content: contains an empty Part (requests[{index}])")
        dims = _field(item, "outputDimensionality", "output_dimensionality")
        if dims is not None and (not positive_int(dims) or dims > full):
            return WIRE.error(400, f"* EmbedContentRequest.output_dimensionality: must be between 1 and {full}")
        items.append((text, dims))
    return model, (model, action, full, items)


def _answer_embed(request: web.Request, parsed: Any, filtered: bool) -> web.Response:
    model, action, full, items = parsed
    renormalize = model != "gemini-embedding-001"
    vectors = [{"values": media.embedding(model, text, full, dims, renormalize)} for text, dims in items]
    if action == "embedContent":
        return json_response({"embedding": vectors[0]})
    answer: dict[str, Any] = {"embeddings": vectors}
    if model == "gemini-embedding-001":
        tokens = sum(count_tokens(text) for text, _ in items)
        answer["usageMetadata"] = {"promptTokenCount": tokens, "totalTokenCount": tokens}
    return json_response(answer)


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
