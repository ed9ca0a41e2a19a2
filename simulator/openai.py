"""OpenAI's wire protocol: `POST /v1/chat/completions` (plain and SSE), `POST
/v1/embeddings`, `POST /v1/images/generations` and `GET /v1/models`.

Auth is `Authorization: Bearer <key>`; the key "invalid" (or none) gets OpenAI's 401.
Errors are `{"error": {"message", "type", "param", "code"}}`. A stream is
`chat.completion.chunk` events: the role first, one reply piece per chunk, a chunk
with `finish_reason`, the usage chunk (`choices: []`) when
`stream_options.include_usage` is set, then `data: [DONE]`.

Tool calls (see simulator/tools.py for when and which): `message.tool_calls` with
`content: null` and finish `tool_calls` (`stop` when `tool_choice` named the function,
as OpenAI answers); streamed as a first delta carrying each call's id, name and empty
arguments, then argument fragments, `index` stable per call. As OpenAI does, a `tool`
message must answer a preceding assistant `tool_calls` id and every call must be
answered; `json_object` needs the word "json" in the messages. `n` gives n choices
(streamed interleaved), `logprobs` / `top_logprobs` per piece. Image parts must be
http(s) or base64 `data:` URLs of a supported type.

Embeddings: float or base64 (`encoding_format`), `dimensions` for text-embedding-3-*
only, usage in `prompt_tokens`. Images: DALL-E 2/3 (`url` by default, or `b64_json`;
DALL-E 3 takes n=1 only) and gpt-image-1 (base64 only, `response_format` refused,
usage in tokens), with each model's sizes.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, ClassVar

import orjson
from aiohttp import web

from . import media
from .serving import (
    Conversation,
    Metered,
    StreamPlan,
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

MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini", "gpt-3.5-turbo",
          "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002", "dall-e-2", "dall-e-3",
          "gpt-image-1")
FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool_calls": "tool_calls",
          "content_filter": "content_filter"}
EMBEDDING_MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
IMAGE_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "gpt-image-1": ("1024x1024", "1536x1024", "1024x1536", "auto"),
}
DEFAULT_SIZES = {"dall-e-2": "1024x1024", "dall-e-3": "1024x1024", "gpt-image-1": "1024x1024"}
GPT_IMAGE_TOKENS = 1056  # output tokens gpt-image-1 reports per image (medium quality, 1024x1024)
FINGERPRINT = "fp_sim0001"
DONE = b"data: [DONE]\n\n"

# status -> (type, code) of OpenAI's error body
ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}
DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    404: "The model does not exist or you do not have access to it.",
    429: "Rate limit reached for requests. Please try again in 1s.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
    529: "The server is overloaded, please try again later.",
}
INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)

_ids = itertools.count(1)
_ID_PREFIX = "chatcmpl-sim" + os.urandom(4).hex()


def _error_body(status: int, message: str | None, param: str | None = None, code: str | None = None) -> dict:
    kind, default_code = ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    text = message or DEFAULT_MESSAGES.get(status) or f"Simulated error {status}."
    return {"error": {"message": text, "type": kind, "param": param, "code": code or default_code}}


class OpenAIWire:
    name: ClassVar[str] = "openai"

    def authenticate(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return self.error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="missing_api_key",
            )
        if key.strip() == "invalid":
            return self.error(401)
        return None

    def error(
        self,
        status: int,
        message: str | None = None,
        retry_after: float | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> web.Response:
        if message == "invalid_json":
            message = INVALID_JSON
        headers = {"Content-Type": "application/json", "x-request-id": f"req_sim{next(_ids):012x}"}
        if retry_after is not None:
            headers["retry-after"] = retry_after_header(retry_after)
        return json_response(_error_body(status, message, param, code), status, headers)

    def parse(self, request: web.Request, body: dict[str, Any], counting: bool = False) -> Conversation | web.Response:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self.error(
                400, "you must provide a model parameter", param="model", code="missing_required_parameter"
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.error(
                400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
            )
        tokens = REPLY_PRIMING
        prompt = ""
        system_text = ""
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                return self.error(400, f"Invalid value for 'messages[{index}]'.", param=f"messages[{index}]")
            content = message.get("content")
            tokens += MESSAGE_OVERHEAD + content_tokens(content)
            role = message["role"]
            if "tool_calls" in message:
                tokens += json_tokens(message["tool_calls"])
            if role == "user":
                prompt = content_text(content)
            elif index == 0 and role in ("system", "developer"):
                system_text = content_text(content)
            problem = _content_problem(content, f"messages[{index}].content")
            if problem is not None:
                return self.error(400, problem[1], param=problem[0], code="invalid_image_url")
        problem = _tool_turn_problem(messages)
        if problem is not None:
            return self.error(400, problem[1], param=problem[0])
        tools = body.get("tools")
        if tools:
            tokens += json_tokens(tools)
        specs, choice = _tools(tools, body.get("tool_choice"), body.get("parallel_tool_calls"))
        response_format = body.get("response_format") or {}
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "json_object" and not any("json" in content_text(m.get("content")).lower() for m in messages):
            return self.error(
                400, "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                "'json_object'.", param="messages")
        schema = (response_format.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
        n = body.get("n") or 1
        logprobs = body.get("top_logprobs") or 1 if body.get("logprobs") else None
        if body.get("top_logprobs") and not body.get("logprobs"):
            return self.error(400, "Invalid value for 'top_logprobs': 'logprobs' must be true.", param="top_logprobs")

        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        if limit is not None and not positive_int(limit):
            return self.error(400, f"Invalid 'max_tokens': {limit!r}. Expected a positive integer.", param="max_tokens")
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = (stop,)
        elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
            stop = tuple(stop)
        elif stop is None:
            stop = ()
        else:
            return self.error(400, "Invalid 'stop': expected a string or an array of strings.", param="stop")

        stream = body.get("stream") is True
        options = body.get("stream_options")
        if options is not None and not stream:
            return self.error(
                400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
            )
        include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        return Conversation(
            model=model,
            prompt=prompt,
            input_tokens=tokens,
            stream=stream,
            max_tokens=limit,
            stop=stop,
            system_text=system_text,
            system_tokens=count_tokens(system_text),
            options={"include_usage": include_usage, "top_k": body.get("top_logprobs") or 0},
            tools=specs,
            tool_choice=choice,
            after_tool_result=messages[-1].get("role") == "tool",
            call_id_prefix="call_",
            json_mode=kind in ("json_object", "json_schema"),
            json_schema=schema,
            n=n if positive_int(n) else 1,
            logprobs=logprobs,
        )

    @staticmethod
    def _usage(usage: Metered) -> dict[str, Any]:
        return {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def plain(self, conv: Conversation, reply: Reply, usage: Metered) -> web.Response:
        choices = [_choice(conv, r, i) for i, r in enumerate((reply, *reply.more))]
        return json_response(
            {
                "id": f"{_ID_PREFIX}{next(_ids):08x}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": conv.model,
                "choices": choices,
                "usage": self._usage(usage),
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT,
            }
        )

    def stream(self, conv: Conversation, reply: Reply, usage: Metered) -> StreamPlan:
        include_usage = conv.options.get("include_usage", False)
        # Every chunk shares its envelope: serialise it once and splice the choice in.
        envelope = {
            "id": f"{_ID_PREFIX}{next(_ids):08x}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": conv.model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": None,
        }
        if include_usage:
            envelope["usage"] = None
        head, _, tail = orjson.dumps(envelope).partition(b'"choices":null')
        prefix = b"data: " + head + b'"choices":['
        suffix = b"]" + tail + b"\n\n"

        def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0, logprobs: Any = None) -> bytes:
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            return prefix + orjson.dumps(choice) + suffix

        replies = (reply, *reply.more)
        tail_events = [chunk({}, _finish(conv, r), i) for i, r in enumerate(replies)]
        if include_usage:
            final = dict(envelope, choices=[], usage=self._usage(usage))
            tail_events.append(b"data: " + orjson.dumps(final) + b"\n\n")
        tail_events.append(DONE)
        if reply.tool_calls:
            head = []
            tokens = []
            for number, call in enumerate(reply.tool_calls):
                opening = {"index": number, "id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": ""}}
                if number == 0:
                    head.append(chunk({"role": "assistant", "content": None, "tool_calls": [opening],
                                       "refusal": None}))
                else:
                    tokens.append(chunk({"tool_calls": [opening]}))
                tokens.extend(chunk({"tool_calls": [{"index": number, "function": {"arguments": piece}}]})
                              for piece in call.fragments)
            return StreamPlan(head=head, tokens=tokens, tail=tail_events, awkward=True)
        top_k = conv.options.get("top_k", 0)
        head = [chunk({"role": "assistant", "content": "", "refusal": None}, index=i) for i in range(len(replies))]
        tokens = []
        for position in range(max(len(r.pieces) for r in replies)):
            for i, r in enumerate(replies):
                if position < len(r.pieces):
                    piece = r.pieces[position]
                    logprobs = _logprobs([piece], top_k, position) if conv.logprobs is not None else None
                    tokens.append(chunk({"content": piece}, index=i, logprobs=logprobs))
        return StreamPlan(head=head, tokens=tokens, tail=tail_events, awkward=conv.json_mode)

    def stream_error(self, status: int, message: str | None) -> bytes:
        return b"data: " + orjson.dumps(_error_body(status, message)) + b"\n\n"

    def malformed_event(self) -> bytes:
        return b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": {"content": \n\n'


def _finish(conv: Conversation, reply: Reply) -> str:
    if reply.finish == "tool_calls" and conv.tool_choice.mode == "named":
        return "stop"  # OpenAI's answer when tool_choice named the function
    return FINISH[reply.finish]


def _logprobs(pieces: Any, top_k: int, start: int = 0) -> dict[str, Any]:
    content = []
    for offset, piece in enumerate(pieces):
        position = start + offset
        entry = {"token": piece, "logprob": piece_logprob(piece, position), "bytes": list(piece.encode())}
        entry["top_logprobs"] = [
            {"token": token, "logprob": logprob, "bytes": list(token.encode())}
            for token, logprob in top_alternatives(piece, position, top_k)
        ] if top_k else []
        content.append(entry)
    return {"content": content, "refusal": None}


def _choice(conv: Conversation, reply: Reply, index: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
    if reply.tool_calls:
        message["content"] = None
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in reply.tool_calls
        ]
    logprobs = _logprobs(reply.pieces, conv.options.get("top_k", 0)) if conv.logprobs is not None else None
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": _finish(conv, reply)}


def _tools(tools: Any, choice: Any, parallel: Any) -> tuple[list[ToolSpec], ToolChoice]:
    specs = []
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            specs.append(ToolSpec(function["name"], function.get("parameters")))
    mode, names = "auto", ()
    if choice in ("none", "required", "auto"):
        mode = choice
    elif isinstance(choice, dict):
        mode, names = "named", ((choice.get("function") or {}).get("name"),)
    return specs, ToolChoice(mode, names, parallel is not False)


def _content_problem(content: Any, where: str) -> tuple[str, str] | None:
    if not isinstance(content, list):
        return None
    for j, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            detail = image.get("detail") if isinstance(image, dict) else None
            problem = media.data_url_problem(url) if isinstance(url, str) else "missing url"
            if problem is None and detail not in (None, "auto", "low", "high"):
                problem = f"invalid detail {detail!r}"
            if problem is not None:
                return f"{where}[{j}].image_url.url", f"Invalid image URL: {problem}."
    return None


def _tool_turn_problem(messages: list[Any]) -> tuple[str, str] | None:
    """OpenAI's rule: tool messages answer the preceding assistant tool_calls, all of them."""
    open_ids: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            if message.get("tool_call_id") not in open_ids:
                return (f"messages.[{index}].role", "Invalid parameter: messages with role 'tool' must be a response "
                        "to a preceeding message with 'tool_calls'.")
            open_ids.discard(message["tool_call_id"])
            continue
        if open_ids:
            return ("messages", "An assistant message with 'tool_calls' must be followed by tool messages responding "
                    "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                    + ", ".join(sorted(open_ids)))
        if role == "assistant":
            open_ids = {c.get("id") for c in message.get("tool_calls") or () if isinstance(c, dict)}
    return None


WIRE = OpenAIWire()
_MODEL_LIST = orjson.dumps(
    {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in MODELS],
    }
)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await handle(WIRE, request)


# -------------------------------------------------------------------------- embeddings


def _parse_embeddings(request: web.Request, body: dict[str, Any]) -> Any:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return WIRE.error(400, "you must provide a model parameter", param="model", code="missing_required_parameter")
    full = EMBEDDING_MODELS.get(model)
    if full is None:
        return WIRE.error(404, f"The model `{model}` does not exist or you do not have access to it.",
                          code="model_not_found")
    value = body.get("input")
    texts: list[str]
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        texts = value
    elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        texts = [" ".join(map(str, value))]  # token ids: one input
    elif isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        texts = [" ".join(map(str, v)) for v in value]
    else:
        return WIRE.error(400, "'$.input' is invalid. Please check the API reference.", param="input")
    if any(not text for text in texts):
        return WIRE.error(400, "'$.input' is invalid. Please check the API reference.", param="input")
    dims = body.get("dimensions")
    if dims is not None:
        if model == "text-embedding-ada-002":
            return WIRE.error(400, "This model does not support specifying dimensions.", param="dimensions")
        if not positive_int(dims) or dims > full:
            return WIRE.error(400, f"Invalid value for 'dimensions' = {dims}. Must be between 1 and {full}.",
                              param="dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return WIRE.error(400, f"Invalid value for 'encoding_format' = {encoding}.", param="encoding_format")
    return model, (model, texts, full, dims, encoding)


def _answer_embeddings(request: web.Request, parsed: Any, filtered: bool) -> web.Response:
    model, texts, full, dims, encoding = parsed
    data = []
    for index, text in enumerate(texts):
        vector = media.embedding(model, text, full, dims)
        data.append({"object": "embedding", "index": index,
                     "embedding": media.to_base64(vector) if encoding == "base64" else vector})
    tokens = sum(count_tokens(text) for text in texts)
    return json_response({"object": "list", "data": data, "model": model,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await handle_unary(WIRE, request, _parse_embeddings, _answer_embeddings)


# ------------------------------------------------------------------------------ images


def _parse_images(request: web.Request, body: dict[str, Any]) -> Any:
    model = body.get("model") or "dall-e-2"
    sizes = IMAGE_SIZES.get(model)
    if sizes is None:
        return WIRE.error(404, f"The model `{model}` does not exist or you do not have access to it.",
                          code="model_not_found")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return WIRE.error(400, "Missing required parameter: 'prompt'.", param="prompt",
                          code="missing_required_parameter")
    n = body.get("n", 1)
    if not positive_int(n) or n > 10 or (model == "dall-e-3" and n != 1):
        limit = "1" if model == "dall-e-3" else "between 1 and 10"
        return WIRE.error(400, f"Invalid 'n': {n}. Must be {limit} for {model}.", param="n")
    size = body.get("size") or DEFAULT_SIZES[model]
    if size not in sizes:
        return WIRE.error(400, f"Invalid value: '{size}'. Supported values are: {', '.join(sizes)}.", param="size")
    response_format = body.get("response_format")
    if model == "gpt-image-1" and response_format is not None:
        return WIRE.error(400, "Unknown parameter: 'response_format'.", param="response_format",
                          code="unknown_parameter")
    if response_format not in (None, "url", "b64_json"):
        return WIRE.error(400, f"Invalid value: '{response_format}'. Supported values are: 'url' and 'b64_json'.",
                          param="response_format")
    as_b64 = model == "gpt-image-1" or response_format == "b64_json"
    return model, (model, prompt, n, "1024x1024" if size == "auto" else size, as_b64)


def _answer_images(request: web.Request, parsed: Any, filtered: bool) -> web.Response:
    model, prompt, n, size, as_b64 = parsed
    if filtered:
        return WIRE.error(400, "Your request was rejected as a result of our safety system.",
                          code="content_policy_violation")
    width, height = (int(v) for v in size.split("x"))
    base = f"{request.scheme}://{request.host}"
    data = []
    for index in range(n):
        rgb = media.colour(model, prompt, index)
        item: dict[str, Any] = (
            {"b64_json": media.png_b64(width, height, rgb)} if as_b64
            else {"url": base + media.image_url_path(width, height, rgb)}
        )
        if model == "dall-e-3":
            item["revised_prompt"] = f"A detailed image of: {prompt}"
        data.append(item)
    answer: dict[str, Any] = {"created": int(time.time()), "data": data}
    if model == "gpt-image-1":
        prompt_tokens = count_tokens(prompt)
        answer.update(background="opaque", output_format="png", quality="medium", size=size, usage={
            "input_tokens": prompt_tokens, "output_tokens": GPT_IMAGE_TOKENS * n,
            "total_tokens": prompt_tokens + GPT_IMAGE_TOKENS * n,
            "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0}})
    return json_response(answer)


async def images(request: web.Request) -> web.StreamResponse:
    return await handle_unary(WIRE, request, _parse_images, _answer_images)


async def list_models(request: web.Request) -> web.Response:
    return admit_get(WIRE, request) or web.Response(body=_MODEL_LIST, content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    return admit_get(WIRE, request) or json_response(
        {"id": model, "object": "model", "created": 1700000000, "owned_by": "system"}
    )
