"""Response objects: plain dataclasses over the gateway's JSON, with the 2api headers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # the part of input_tokens served from the provider's prompt cache

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    # OpenAI's names for the same numbers
    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens

    @property
    def completion_tokens(self) -> int:
        return self.output_tokens

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> Usage | None:
        if not usage:
            return None
        details = usage.get("prompt_tokens_details") or {}
        return cls(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
        )


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it

    @property
    def parsed_arguments(self) -> Any:
        return json.loads(self.arguments or "{}")


@dataclass
class ResponseMeta:
    """What the gateway says about a request in its headers."""

    request_id: str | None = None
    provider: str | None = None
    model: str | None = None
    attempts: int | None = None
    cost: Decimal | None = None
    routing_strategy: str | None = None

    @classmethod
    def from_headers(cls, headers: Any) -> ResponseMeta:
        attempts = headers.get("x-2api-attempts")
        return cls(
            request_id=headers.get("x-request-id"),
            provider=headers.get("x-2api-provider"),
            model=headers.get("x-2api-model"),
            attempts=int(attempts) if attempts and attempts.isdigit() else None,
            cost=_decimal(headers.get("x-2api-cost")),
            routing_strategy=headers.get("x-2api-routing-strategy"),
        )


def _decimal(value: str | None) -> Decimal | None:
    if not value:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


@dataclass
class ChatResponse:
    """One chat completion. `cost` is the exact USD amount the ledger recorded
    (a Decimal), `request_id` the id to look the request up by."""

    content: str | None
    model: str
    provider: str | None
    usage: Usage
    cost: Decimal | None
    request_id: str | None
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    attempts: int | None = None
    routing_strategy: str | None = None
    id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return self.content or ""

    @property
    def message(self) -> dict[str, Any]:
        choices = self.raw.get("choices") or [{}]
        return choices[0].get("message") or {}

    @classmethod
    def from_body(cls, body: dict[str, Any], meta: ResponseMeta) -> ChatResponse:
        choice = (body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        model = body.get("model") or meta.model or ""
        return cls(
            content=message.get("content"),
            model=model,
            provider=meta.provider or (model.split("/", 1)[0] if "/" in model else None),
            usage=Usage.from_openai(body.get("usage")) or Usage(),
            cost=meta.cost,
            request_id=meta.request_id,
            finish_reason=choice.get("finish_reason"),
            tool_calls=[_tool_call(call) for call in message.get("tool_calls") or ()],
            attempts=meta.attempts,
            routing_strategy=meta.routing_strategy,
            id=body.get("id"),
            raw=body,
        )


def _tool_call(call: dict[str, Any]) -> ToolCall:
    function = call.get("function") or {}
    return ToolCall(id=call.get("id") or "", name=function.get("name") or "", arguments=function.get("arguments") or "")


@dataclass
class Model:
    id: str
    provider: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Model:
        model_id = body.get("id") or ""
        return cls(id=model_id, provider=body.get("owned_by") or model_id.split("/", 1)[0], raw=body)


@dataclass
class EmbeddingsResponse:
    embeddings: list[list[float]]
    model: str
    usage: Usage
    cost: Decimal | None
    request_id: str | None
    provider: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_body(cls, body: dict[str, Any], meta: ResponseMeta) -> EmbeddingsResponse:
        data = sorted(body.get("data") or (), key=lambda item: item.get("index", 0))
        model = body.get("model") or meta.model or ""
        return cls(
            embeddings=[item.get("embedding") for item in data],
            model=model,
            usage=Usage.from_openai(body.get("usage")) or Usage(),
            cost=meta.cost,
            request_id=meta.request_id,
            provider=meta.provider or (model.split("/", 1)[0] if "/" in model else None),
            raw=body,
        )
