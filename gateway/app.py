"""The Quart application: routes, start-up and shutdown, error envelopes.

Handlers stay thin: authenticate, then hand over to the module that owns the
endpoint. Every response, errors included, carries an OpenAI-shaped body.
"""

from __future__ import annotations

import traceback

import structlog
from opentelemetry.sdk.trace.export import SpanExporter
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from gateway.admin import admin_api
from gateway.analytics_api import analytics_blueprint
from gateway.anthropic_api import messages_api
from gateway.auth import Principal
from gateway.chat import chat_completions, envelope_response, error_response
from gateway.chat_edge import ChatEdge
from gateway.config import Settings
from gateway.embeddings import embeddings_api
from gateway.errors import GatewayError, too_large
from gateway.images import images_api
from gateway.observability import configure_logging
from gateway.openapi import openapi_api
from gateway.repricing_api import repricing_api
from gateway.services import Services
from gateway.usage import usage_api

log = structlog.get_logger("gateway.app")

# werkzeug's HTTP errors raised by Quart itself -> our taxonomy codes.
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout", 413: "request_too_large"}


def create_app(settings: Settings, span_exporter: SpanExporter | None = None) -> Quart:
    configure_logging(settings.log_level)
    app = Quart("twoapi")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        BODY_TIMEOUT=60,
        RESPONSE_TIMEOUT=None,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    services = Services(settings, span_exporter)
    app.extensions["twoapi"] = services
    app.register_blueprint(analytics_blueprint(services))

    @app.before_serving
    async def start() -> None:
        await services.start()

    @app.after_serving
    async def stop() -> None:
        await services.stop()

    async def principal() -> Principal:
        return await services.authenticator.authenticate(request.headers.get("authorization"))

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', 200, content_type="application/json")

    @app.get("/v1/models")
    async def models() -> dict:
        await principal()
        configured = [m for m in services.catalog.models if services.is_configured(m)]
        return {
            "object": "list",
            "data": [{"id": m.id, "object": "model", "created": 0, "owned_by": m.provider} for m in configured],
        }

    @app.post("/v1/chat/completions")
    async def chat() -> Response:
        caller = await principal()
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            raise too_large(settings.max_body_bytes)
        raw = await request.get_data(cache=False)
        if len(raw) > settings.max_body_bytes:  # a chunked body declares no length, and Quart let it through
            raise too_large(settings.max_body_bytes)
        return await chat_completions(services, caller, raw)

    app.register_blueprint(messages_api)  # POST /v1/messages (Anthropic-compatible)
    app.register_blueprint(embeddings_api)  # POST /v1/embeddings
    app.register_blueprint(images_api)  # POST /v1/images/generations
    app.register_blueprint(admin_api)  # /admin/... (TWOAPI_ADMIN_TOKEN)
    app.register_blueprint(repricing_api)  # POST /admin/reprice (dry run; TWOAPI_ADMIN_TOKEN)
    app.register_blueprint(usage_api)  # GET /v1/usage
    app.register_blueprint(openapi_api)  # GET /openapi.json

    @app.errorhandler(GatewayError)
    async def gateway_error(error: GatewayError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return http_error_response(error, request.method, request.path, settings.max_body_bytes)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        return unexpected_response(error, request.path)

    if settings.chat_edge:
        # POST /v1/chat/completions is then answered before Quart sees it, by the same
        # handler (gateway/chat_edge.py); the route above still declares the path (405s,
        # the OpenAPI check) and serves it with TWOAPI_CHAT_EDGE=off.
        app.asgi_app = ChatEdge(app.asgi_app, services, settings.max_body_bytes,  # type: ignore[method-assign]
                                app.config["BODY_TIMEOUT"], http_error_response, unexpected_response)

    return app


def http_error_response(error: HTTPException, method: str, path: str, max_body_bytes: int) -> Response:
    """werkzeug's HTTP errors (raised by Quart, or by the chat edge as Quart would) in
    the OpenAI envelope."""
    status = error.code or 500
    code = HTTP_ERROR_CODES.get(status)
    if code == "request_too_large":
        return error_response(too_large(max_body_bytes))
    if code is None:
        code = "invalid_request" if status < 500 else "internal_error"
    response = envelope_response(code, f"{method} {path}: {error.description or error.name}")
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["allow"] = ", ".join(sorted(error.valid_methods))  # RFC 9110
    return response


def unexpected_response(error: Exception, path: str) -> Response:
    # The type and where it was raised, never the message: it may quote input.
    frames = traceback.extract_tb(error.__traceback__)
    where = [f"{'/'.join(frame.filename.rsplit('/', 2)[-2:])}:{frame.lineno}" for frame in frames[-4:]]
    log.error("unhandled_error", error=type(error).__name__, path=path, where=where)
    return envelope_response("internal_error", "The gateway failed unexpectedly; the error is logged.")
