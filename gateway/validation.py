"""Request validation: a parsed body either passes or fails with the field named.

Checks are a table of field -> rule rather than a schema library: this runs on every
request, and the table is also the documented rule for unknown fields (rejected, as
OpenAI does: a typo in a parameter name should not silently change nothing). One
table per endpoint: CHAT_FIELDS, EMBEDDING_FIELDS, IMAGE_FIELDS (docs/api-surface.md).
Whether a provider can honour a valid parameter is decided at routing
(adapters/params.py), not here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from gateway.errors import GatewayError

Rule = Callable[[Any, str], None]


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise GatewayError("invalid_json", "The request body is empty; expected a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise GatewayError("invalid_json", f"The request body is not valid JSON: {error.msg}.") from None
    if not isinstance(body, dict):
        raise GatewayError("invalid_json", "The request body must be a JSON object.")
    return body


def _fail(param: str, message: str) -> GatewayError:
    return GatewayError("invalid_request", f"Invalid value for '{param}': {message}", param=param)


def _string(value: Any, param: str) -> None:
    if not isinstance(value, str):
        raise _fail(param, "expected a string.")


def _nonempty_string(value: Any, param: str) -> None:
    if not isinstance(value, str) or not value:
        raise _fail(param, "expected a non-empty string.")


def _boolean(value: Any, param: str) -> None:
    if not isinstance(value, bool):
        raise _fail(param, "expected a boolean.")


def _object(value: Any, param: str) -> None:
    if not isinstance(value, dict):
        raise _fail(param, "expected an object.")


def _array(value: Any, param: str) -> None:
    if not isinstance(value, list):
        raise _fail(param, "expected an array.")


def _number(low: float, high: float) -> Rule:
    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(param, "expected a number.")
        if not low <= value <= high:
            raise _fail(param, f"expected a number between {low:g} and {high:g}.")

    return check


def _integer(low: int, high: int) -> Rule:
    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(param, "expected an integer.")
        if not low <= value <= high:
            raise _fail(param, f"expected an integer between {low} and {high}.")

    return check


def _stop(value: Any, param: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or len(value) > 4 or not all(isinstance(s, str) for s in value):
        raise _fail(param, "expected a string or an array of at most 4 strings.")


def _stream_options(value: Any, param: str) -> None:
    _object(value, param)
    for key, item in value.items():
        if key not in ("include_usage", "include_obfuscation"):
            raise _fail(f"{param}.{key}", "unknown stream option.")
        _boolean(item, f"{param}.{key}")


def _models(value: Any, param: str) -> None:
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise _fail(param, "expected an array of model names.")


ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DETAILS = frozenset({"auto", "low", "high"})
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


def _one_of(*allowed: str) -> Rule:
    def check(value: Any, param: str) -> None:
        if value not in allowed:
            raise _fail(param, f"expected one of {', '.join(allowed)}.")

    return check


def _function_name(value: Any, param: str) -> None:
    if not isinstance(value, str) or not NAME.match(value):
        raise _fail(param, "expected a name of 1-64 letters, digits, underscores or dashes.")


def _tools(value: Any, param: str) -> None:
    if not isinstance(value, list):
        raise _fail(param, "expected an array of tools.")
    for i, tool in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _fail(f"{where}.type", "expected a tool of type 'function'.")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _fail(f"{where}.function", "expected an object.")
        _function_name(function.get("name"), f"{where}.function.name")
        if function.get("description") is not None:
            _string(function["description"], f"{where}.function.description")
        if function.get("parameters") is not None:
            _object(function["parameters"], f"{where}.function.parameters")
        if function.get("strict") is not None:
            _boolean(function["strict"], f"{where}.function.strict")


def _tool_choice(value: Any, param: str) -> None:
    if value in ("none", "auto", "required"):
        return
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("function"), dict):
        _function_name(value["function"].get("name"), f"{param}.function.name")
        return
    raise _fail(param, "expected 'none', 'auto', 'required' or a named function "
                "({\"type\": \"function\", \"function\": {\"name\": ...}}).")


def _response_format(value: Any, param: str) -> None:
    _object(value, param)
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise _fail(f"{param}.type", "expected one of text, json_object, json_schema.")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise _fail(f"{param}.json_schema", "expected an object with a name and a schema.")
        _function_name(spec.get("name"), f"{param}.json_schema.name")
        if spec.get("schema") is not None:
            _object(spec["schema"], f"{param}.json_schema.schema")
        if spec.get("strict") is not None:
            _boolean(spec["strict"], f"{param}.json_schema.strict")


def _metadata(value: Any, param: str) -> None:
    _object(value, param)
    if len(value) > 16:
        raise _fail(param, "at most 16 key-value pairs.")
    for key, item in value.items():
        if len(key) > 64 or not isinstance(item, str) or len(item) > 512:
            raise _fail(f"{param}.{key}", "keys of at most 64 characters, string values of at most 512.")


def _modalities(value: Any, param: str) -> None:
    if not isinstance(value, list) or not value or not all(m in ("text", "audio") for m in value):
        raise _fail(param, "expected an array of 'text' and 'audio'.")


def _messages(value: Any, param: str) -> None:
    if not isinstance(value, list) or not value:
        raise _fail(param, "expected a non-empty array of messages.")
    for i, message in enumerate(value):
        _message(message, f"{param}[{i}]")


def _message(message: Any, param: str) -> None:
    if not isinstance(message, dict):
        raise _fail(param, "expected a message object.")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise _fail(f"{param}.role", f"expected one of {', '.join(sorted(ROLES))}.")
    content = message.get("content")
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise _fail(f"{param}.content", "a message needs content.")
    if isinstance(content, str):
        pass
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise _fail(f"{param}.content[{j}]", "expected a content part with a 'type'.")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise _fail(f"{param}.content[{j}].text", "expected a string.")
            if part["type"] == "image_url":
                _image_part(part, f"{param}.content[{j}]")
    else:
        raise _fail(f"{param}.content", "expected a string or an array of content parts.")
    if role == "assistant" and message.get("tool_calls") is not None:
        _tool_calls(message["tool_calls"], f"{param}.tool_calls")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _fail(f"{param}.tool_call_id", "a tool message needs the id of the call it answers.")
    name = message.get("name")
    if name is not None:
        _string(name, f"{param}.name")


def _image_part(part: dict[str, Any], param: str) -> None:
    image = part.get("image_url")
    if not isinstance(image, dict) or not isinstance(image.get("url"), str) or not image["url"]:
        raise _fail(f"{param}.image_url", "expected an object with a 'url' (https: or data:).")
    detail = image.get("detail")
    if detail is not None and detail not in DETAILS:
        raise _fail(f"{param}.image_url.detail", "expected one of auto, low, high.")


def _tool_calls(value: Any, param: str) -> None:
    if not isinstance(value, list):
        raise _fail(param, "expected an array of tool calls.")
    for i, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str):
            raise _fail(f"{param}[{i}]", "expected a tool call with an 'id' and a 'function'.")
        if not isinstance(function.get("name"), str) or not isinstance(function.get("arguments", ""), str):
            raise _fail(f"{param}[{i}].function", "expected a 'name' and 'arguments' (a JSON string).")


def _any(value: Any, param: str) -> None:
    """Accepted here; its shape is checked where it is translated."""


# Every field a chat request may carry. Unknown fields are rejected.
CHAT_FIELDS: dict[str, Rule] = {
    "model": _nonempty_string,
    "messages": _messages,
    "stream": _boolean,
    "stream_options": _stream_options,
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "max_tokens": _integer(1, 10_000_000),
    "max_completion_tokens": _integer(1, 10_000_000),
    "stop": _stop,
    "n": _integer(1, 128),
    "seed": _integer(-(2**63), 2**63 - 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "logit_bias": _object,
    "logprobs": _boolean,
    "top_logprobs": _integer(0, 20),
    "user": _string,
    "metadata": _metadata,
    "store": _boolean,
    "service_tier": _string,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _boolean,
    "functions": _array,
    "function_call": _any,
    "response_format": _response_format,
    "reasoning_effort": _one_of(*REASONING_EFFORTS),
    "modalities": _modalities,
    "prediction": _object,
    "audio": _object,
    "web_search_options": _object,
    # 2api's own: routing options and an explicit fallback list.
    "routing": _object,
    "models": _models,
}

REQUIRED_CHAT_FIELDS = ("model", "messages")


def validate_chat(body: dict[str, Any]) -> dict[str, Any]:
    for name in REQUIRED_CHAT_FIELDS:
        if body.get(name) is None:
            raise GatewayError("invalid_request", f"Missing required parameter: '{name}'.", param=name)
    for name, value in body.items():
        rule = CHAT_FIELDS.get(name)
        if rule is None:
            raise GatewayError(
                "invalid_request", f"Unrecognized request argument supplied: {name}", param=name
            )
        if value is not None:
            rule(value, name)
    # An explicit null means "the default", as in OpenAI's API: drop it here so no
    # later stage has to tell null from absent.
    for name in [name for name, value in body.items() if value is None]:
        del body[name]
    if body.get("stream_options") and not body.get("stream"):
        raise _fail("stream_options", "only allowed when 'stream' is true.")
    if body.get("top_logprobs") and not body.get("logprobs"):
        raise _fail("top_logprobs", "'logprobs' must be true to ask for top_logprobs.")
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        if not any((t.get("function") or {}).get("name") == name for t in body.get("tools") or ()):
            raise _fail("tool_choice", f"names the function {name!r}, which is not among 'tools'.")
    elif choice is not None and choice != "none" and not body.get("tools"):
        raise _fail("tool_choice", "only allowed when 'tools' are given.")
    return body


def _validate(body: dict[str, Any], fields: dict[str, Rule], required: tuple[str, ...]) -> dict[str, Any]:
    for name in required:
        if body.get(name) is None:
            raise GatewayError("invalid_request", f"Missing required parameter: '{name}'.", param=name)
    for name, value in body.items():
        rule = fields.get(name)
        if rule is None:
            raise GatewayError("invalid_request", f"Unrecognized request argument supplied: {name}", param=name)
        if value is not None:
            rule(value, name)
    return body


def _embedding_input(value: Any, param: str) -> None:
    if isinstance(value, str):
        if not value:
            raise _fail(param, "expected a non-empty string.")
        return
    if not isinstance(value, list) or not value or len(value) > 2048:
        raise _fail(param, "expected a string, or an array of 1-2048 strings or token arrays.")
    if all(isinstance(v, str) and v for v in value):
        return
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return
    if all(isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
           for v in value):
        return
    raise _fail(param, "expected a string, an array of non-empty strings, an array of token ids or an array "
                "of token-id arrays.")


# POST /v1/embeddings. Unknown fields are rejected, as in chat.
EMBEDDING_FIELDS: dict[str, Rule] = {
    "model": _nonempty_string,
    "input": _embedding_input,
    "dimensions": _integer(1, 65_536),
    "encoding_format": _one_of("float", "base64"),
    "user": _string,
}

# POST /v1/images/generations. Unknown fields are rejected, as in chat.
IMAGE_FIELDS: dict[str, Rule] = {
    "model": _nonempty_string,
    "prompt": _nonempty_string,
    "n": _integer(1, 10),
    "size": _nonempty_string,
    "quality": _nonempty_string,
    "response_format": _one_of("url", "b64_json"),
    "style": _nonempty_string,
    "user": _string,
    "background": _nonempty_string,
    "output_format": _nonempty_string,
    "output_compression": _integer(0, 100),
    "moderation": _nonempty_string,
}


def validate_embeddings(body: dict[str, Any]) -> dict[str, Any]:
    return _validate(body, EMBEDDING_FIELDS, ("model", "input"))


def validate_images(body: dict[str, Any]) -> dict[str, Any]:
    return _validate(body, IMAGE_FIELDS, ("model", "prompt"))
