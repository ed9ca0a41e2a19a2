"""Shared inputs of the golden wire-translation tests: one OpenAI conversation that
has every tool-calling edge case, and helpers to build native SSE bodies."""

from __future__ import annotations

from typing import Any

import orjson

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "days": {"type": ["integer", "null"], "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}
TOOLS = [
    {"type": "function", "function": {"name": "weather", "description": "Current weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "time", "parameters": TIME}},
]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"

# system prompt, an image by data: and by https: URL, an assistant turn with EMPTY
# content and TWO parallel tool calls, a tool result carrying JSON and one carrying
# plain text, then the next user turn.
CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [
        {"type": "text", "text": "Weather and time where these photos were taken?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}},
    ]},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_w", "type": "function", "function": {"name": "weather",
                                                           "arguments": '{"city": "Paris", "unit": "c"}'}},
        {"id": "call_t", "type": "function", "function": {"name": "time", "arguments": '{"tz": "Europe/Paris"}'}},
    ]},
    {"role": "tool", "tool_call_id": "call_w", "content": '{"temp": 18, "sky": "clear", "wind": [3, "NW"]}'},
    {"role": "tool", "tool_call_id": "call_t", "content": "14:05"},
    {"role": "user", "content": "And tomorrow?"},
]


def sse(*events: tuple[str | None, Any]) -> bytes:
    """An SSE body of (event name or None, data) pairs; data that is bytes goes as is."""
    out = b""
    for name, data in events:
        if name:
            out += b"event: " + name.encode() + b"\n"
        out += b"data: " + (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n\n"
    return out


def arguments_by_index(chunks: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per tool-call index: id, name and the concatenated arguments of stream chunks."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for call in (chunk.get("delta") or {}).get("tool_calls") or ():
            entry = calls.setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
            if call.get("id"):
                entry["id"] = call["id"]
            function = call.get("function") or {}
            if function.get("name"):
                entry["name"] = function["name"]
            entry["arguments"] += function.get("arguments") or ""
    return calls
