"""OpenAI's wire protocol: `POST /v1/chat/completions` (plain and SSE) and `GET /v1/models`.

Auth is `Authorization: Bearer <key>`; the key "invalid" (or none) gets OpenAI's 401.
Errors are `{"error": {"message", "type", "param", "code"}}`. A stream is
`chat.completion.chunk` events: the role first, one reply piece per chunk, a chunk
with `finish_reason`, the usage chunk (`choices: []`) when
`stream_options.include_usage` is set, then `data: [DONE]`.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, ClassVar

import orjson
from aiohttp import web

from .serving import (
    Conversation,
    Metered,
    StreamPlan,
    admit_get,
    handle,
    json_response,
    positive_int,
    retry_after_header,
)
from .text import MESSAGE_OVERHEAD, REPLY_PRIMING, Reply, content_text, content_tokens, count_tokens, json_tokens

MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini", "gpt-3.5-turbo")
FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length"}
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
        if body.get("tools"):
            tokens += json_tokens(body["tools"])

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
            options={"include_usage": include_usage},
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
        return json_response(
            {
                "id": f"{_ID_PREFIX}{next(_ids):08x}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": conv.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []},
                        "logprobs": None,
                        "finish_reason": FINISH[reply.finish],
                    }
                ],
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

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return prefix + orjson.dumps(choice) + suffix

        tail_events = [chunk({}, FINISH[reply.finish])]
        if include_usage:
            final = dict(envelope, choices=[], usage=self._usage(usage))
            tail_events.append(b"data: " + orjson.dumps(final) + b"\n\n")
        tail_events.append(DONE)
        return StreamPlan(
            head=[chunk({"role": "assistant", "content": "", "refusal": None})],
            tokens=[chunk({"content": piece}) for piece in reply.pieces],
            tail=tail_events,
        )

    def stream_error(self, status: int, message: str | None) -> bytes:
        return b"data: " + orjson.dumps(_error_body(status, message)) + b"\n\n"

    def malformed_event(self) -> bytes:
        return b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": {"content": \n\n'


WIRE = OpenAIWire()
_MODEL_LIST = orjson.dumps(
    {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in MODELS],
    }
)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await handle(WIRE, request)


async def list_models(request: web.Request) -> web.Response:
    return admit_get(WIRE, request) or web.Response(body=_MODEL_LIST, content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    return admit_get(WIRE, request) or json_response(
        {"id": model, "object": "model", "created": 1700000000, "owned_by": "system"}
    )
