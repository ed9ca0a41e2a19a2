"""POST /v1/images/generations: OpenAI's image API over OpenAI and Gemini image models.

`n` images of `size` (Gemini: the size's aspect ratio, at Gemini's resolution for it),
as `url` or `b64_json` (`response_format`). Providers that answer only base64 (GPT
Image, Gemini) are answered with `data:` URLs when `url` is asked for: the gateway
keeps no files. Metered per image (`UsageMetered.images` at the model's price per
image), plus tokens where the provider bills tokens (GPT Image, Gemini). Recorded in
the ledger like chat (gateway/unary.py).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, request

from adapters.base import GeneratedImages, Target
from adapters.catalog import ModelInfo
from gateway.auth import Principal
from gateway.errors import GatewayError
from gateway.services import Services
from gateway.unary import serve_unary
from gateway.validation import validate_images

ENDPOINT = "images.generations"


async def _generate(adapter: Any, body: dict[str, Any], target: Target) -> GeneratedImages:
    return await adapter.generate_images(body, target)


def _respond(answer: GeneratedImages, model: ModelInfo) -> dict[str, Any]:
    body: dict[str, Any] = {"created": answer.created, "data": answer.data}
    usage = answer.usage
    if usage.input_tokens or usage.output_tokens:
        body["usage"] = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                         "total_tokens": usage.input_tokens + usage.output_tokens}
    return body


async def generate_images(services: Services, principal: Principal, raw: bytes) -> Response:
    return await serve_unary(
        services, principal, raw, endpoint=ENDPOINT, capability="images", what="image generation",
        validate=validate_images, call=_generate, respond=_respond,
    )


images_api = Blueprint("images", __name__)


@images_api.post("/v1/images/generations")
async def images_endpoint() -> Response:
    services: Services = current_app.extensions["twoapi"]
    caller = await services.authenticator.authenticate(request.headers.get("authorization"))
    limit = services.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise GatewayError("request_too_large", f"The request body exceeds the limit of {limit} bytes.")
    return await generate_images(services, caller, await request.get_data(cache=False))
