"""POST /v1/embeddings: OpenAI's embeddings API over OpenAI and Gemini embedding models.

`input` is a string or an array (of strings, or for OpenAI models of token ids),
`dimensions` shortens the vectors (OpenAI `dimensions`, Gemini
`outputDimensionality`), `encoding_format` is `float` (default) or `base64`
(little-endian float32, as OpenAI encodes it; the openai SDK asks for it by default).
Metered in tokens: the provider's count, or an estimate marked `estimated` when the
provider reports none. Recorded in the ledger like chat (gateway/unary.py).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, request

from adapters.base import Embeddings, Target
from adapters.catalog import ModelInfo
from gateway.auth import Principal
from gateway.errors import GatewayError
from gateway.services import Services
from gateway.unary import serve_unary
from gateway.validation import validate_embeddings

ENDPOINT = "embeddings"


async def _embed(adapter: Any, body: dict[str, Any], target: Target) -> Embeddings:
    return await adapter.embed(body, target)


def _respond(answer: Embeddings, model: ModelInfo) -> dict[str, Any]:
    tokens = answer.usage.input_tokens
    return {"object": "list", "data": answer.data, "model": model.id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


async def create_embeddings(services: Services, principal: Principal, raw: bytes) -> Response:
    return await serve_unary(
        services, principal, raw, endpoint=ENDPOINT, capability="embeddings", what="embeddings",
        validate=validate_embeddings, call=_embed, respond=_respond,
    )


embeddings_api = Blueprint("embeddings", __name__)


@embeddings_api.post("/v1/embeddings")
async def embeddings_endpoint() -> Response:
    services: Services = current_app.extensions["twoapi"]
    caller = await services.authenticator.authenticate(request.headers.get("authorization"))
    limit = services.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise GatewayError("request_too_large", f"The request body exceeds the limit of {limit} bytes.")
    return await create_embeddings(services, caller, await request.get_data(cache=False))
