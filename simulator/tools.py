"""Deterministic tool calls and structured output: what a simulated model "calls".

Whether it calls (`plan_calls`): a request with tools and a tool choice that allows
calls (OpenAI `auto`/`required`/a named function, Anthropic `auto`/`any`/`tool`,
Gemini `AUTO`/`ANY`) gets tool calls instead of text, except that under `auto` a
conversation whose last turn is a tool result is answered in text (so a round trip
call -> result -> answer ends). A forced choice always calls.

Which tools: the named one when the choice names one (or Gemini's
`allowedFunctionNames`); otherwise every tool whose name occurs in the last user text
(case-insensitively), or the first tool when none does. With parallel calls turned
off (OpenAI `parallel_tool_calls: false`, Anthropic `disable_parallel_tool_use`) only
the first of them.

Arguments (`generate`): a value built from the tool's JSON Schema (or Gemini Schema:
upper-case types, `nullable`, `propertyOrdering`) with a PRNG seeded by SHA-256 of
(model, tool name, last user text, call number): every declared property, enums and
consts honoured, numbers within minimum/maximum, arrays of two items (or minItems),
strings from the reply vocabulary with a deterministic tricky suffix (quotes,
backslashes, accents, CJK, an emoji, a newline), so clients must really parse the
JSON. Structured output (`response_format` json_schema, Gemini `responseSchema`) is
generated the same way; json_object / a schema-less JSON MIME type answers
`{"answer": <the usual reply text>}`.

Streaming (`fragments`): argument (and structured-output) JSON text is cut into
pieces of 1, 4, 2, 7, 3, 5, ... characters, so pieces end inside keys, inside escape
sequences (`\\` | `n`, `\\u00` | `e9`) and between the halves of a surrogate pair.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

from .text import VOCABULARY, count_tokens

FRAGMENT_SIZES = (1, 4, 2, 7, 3, 5, 6, 2, 9, 1, 3)
TRICKY = ("", ' "quoted"', " back\\slash", " café", " 東京", " 🌍", " line\nbreak", "\ttab")
MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    schema: Any  # JSON Schema or Gemini Schema of the arguments (None: no parameters)


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str  # the provider's style ("call_...", "toolu_..."); Gemini sends none
    name: str
    args: Any  # the arguments as a value
    arguments: str  # as JSON text, what a plain answer carries
    fragments: tuple[str, ...]  # how a stream sends `arguments` (ASCII-escaped pieces)
    tokens: int


@dataclass(slots=True)
class ToolChoice:
    mode: str = "auto"  # auto | none | required | named
    names: tuple[str, ...] = ()  # for `named`: the allowed tool names
    parallel: bool = True


def _rng(*parts: str) -> random.Random:
    return random.Random(hashlib.sha256("\x00".join(parts).encode()).digest())


def plan_calls(
    model: str,
    prompt: str,
    tools: list[ToolSpec],
    choice: ToolChoice,
    after_tool_result: bool,
    id_prefix: str,
) -> tuple[ToolCall, ...]:
    """The tool calls a simulated model answers with (empty: it answers in text)."""
    if not tools or choice.mode == "none" or (choice.mode == "auto" and after_tool_result):
        return ()
    if choice.mode == "named":
        chosen = [t for t in tools if t.name in choice.names][:1] or tools[:1]
    else:
        lowered = prompt.lower()
        chosen = [t for t in tools if t.name.lower() in lowered] or tools[:1]
    if not choice.parallel:
        chosen = chosen[:1]
    calls = []
    for number, tool in enumerate(chosen):
        rng = _rng(model, tool.name, prompt, str(number))
        args = generate(tool.schema, rng) if tool.schema is not None else {}
        if not isinstance(args, dict):
            args = {"value": args}
        calls.append(make_call(tool.name, args, id_prefix + _id(rng) if id_prefix else ""))
    return tuple(calls)


def make_call(name: str, args: Any, call_id: str) -> ToolCall:
    text = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    return ToolCall(call_id, name, args, text, fragments(json.dumps(args, separators=(",", ":"))),
                    count_tokens(name) + count_tokens(text))


def _id(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(rng.choice(alphabet) for _ in range(24))


def fragments(text: str) -> tuple[str, ...]:
    pieces = []
    at = 0
    step = 0
    while at < len(text):
        size = FRAGMENT_SIZES[step % len(FRAGMENT_SIZES)]
        pieces.append(text[at : at + size])
        at += size
        step += 1
    return tuple(pieces)


def structured_text(model: str, prompt: str, schema: Any, plain_text: str) -> str:
    """The JSON a model in JSON mode answers: generated from `schema`, or
    {"answer": plain_text} when there is none."""
    if schema is None:
        return json.dumps({"answer": plain_text}, ensure_ascii=False)
    return json.dumps(generate(schema, _rng(model, "response", prompt)), ensure_ascii=False)


# --------------------------------------------------------------------------- values


def generate(schema: Any, rng: random.Random, root: Any = None, depth: int = 0) -> Any:
    """A value that satisfies `schema` (JSON Schema or Gemini Schema), deterministically."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for token in ref[2:].split("/"):
            target = target.get(token) if isinstance(target, dict) else None
        return generate({**(target or {}), **{k: v for k, v in schema.items() if k != "$ref"}}, rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if enum:
        return enum[rng.randrange(len(enum))]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if branches:
            usable = [b for b in branches if not (isinstance(b, dict) and _type(b) == "null")] or branches
            return generate(usable[0], rng, root, depth + 1)
    all_of = schema.get("allOf")
    if all_of:
        merged: dict[str, Any] = {}
        for part in all_of:
            if isinstance(part, dict):
                merged.update(part)
        return generate({**merged, **{k: v for k, v in schema.items() if k != "allOf"}}, rng, root, depth + 1)
    kind = _type(schema)
    if kind == "object":
        properties = schema.get("properties") or {}
        order = schema.get("propertyOrdering") or list(properties)
        return {name: generate(properties[name], rng, root, depth + 1) for name in order if name in properties}
    if kind == "array":
        count = max(schema.get("minItems") or 0, min(schema.get("maxItems") or 2, 2))
        return [generate(schema.get("items") or {"type": "string"}, rng, root, depth + 1) for _ in range(count)]
    if kind == "integer":
        low = int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
        high = int(schema.get("maximum", schema.get("exclusiveMaximum", low + 101) - 1))
        return rng.randint(low, max(low, high))
    if kind == "number":
        low = float(schema.get("minimum", 0))
        high = float(schema.get("maximum", low + 100))
        return round(rng.uniform(low, high), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


_FORMATS = {
    "date-time": "2024-05-17T10:20:30Z",
    "date": "2024-05-17",
    "time": "10:20:30",
    "email": "ada@example.com",
    "uri": "https://example.com/x",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
}


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fixed = _FORMATS.get(schema.get("format") or "")
    if fixed is not None:
        return fixed
    words = [VOCABULARY[rng.randrange(len(VOCABULARY))] for _ in range(rng.randint(1, 3))]
    text = " ".join(words).capitalize() + TRICKY[rng.randrange(len(TRICKY))]
    low, high = schema.get("minLength") or 0, schema.get("maxLength")
    if high is not None:
        text = text[:high]
    return text.ljust(low, "x")
