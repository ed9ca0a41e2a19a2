"""Request validation: a parsed body either passes or fails with the field named.

Checks are a table of field -> rule rather than a schema library: this runs on every
request, and the table is also the documented rule for unknown fields (rejected, as
OpenAI does: a typo in a parameter name should not silently change nothing).
"""

from __future__ import annotations

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
    else:
        raise _fail(f"{param}.content", "expected a string or an array of content parts.")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _fail(f"{param}.tool_call_id", "a tool message needs the id of the call it answers.")
    name = message.get("name")
    if name is not None:
        _string(name, f"{param}.name")


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
    "metadata": _object,
    "store": _boolean,
    "service_tier": _string,
    "tools": _array,
    "tool_choice": _any,
    "parallel_tool_calls": _boolean,
    "functions": _array,
    "function_call": _any,
    "response_format": _object,
    "reasoning_effort": _string,
    "modalities": _array,
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
    return body
