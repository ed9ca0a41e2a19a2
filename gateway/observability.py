"""Logs and traces.

Logs: structlog, one JSON object per line on stderr; one line per request with its
id, tenant, provider, model, status, attempts, latency and tokens. Only fields we
name are logged, so keys and prompt text cannot slip in through a stray variable.

Traces: an OpenTelemetry span per request and one per attempt, with GenAI
semantic-convention attributes. Exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is
set; otherwise no tracer is installed and spans cost nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )


def build_tracer(exporter: SpanExporter | None = None) -> trace.Tracer | None:
    """A tracer exporting to `exporter` (in-process, synchronously: for embedding and
    tests), or over OTLP in batches when OTEL_EXPORTER_OTLP_ENDPOINT is set, else None."""
    service = os.environ.get("OTEL_SERVICE_NAME", "twoapi-gateway")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        return None
    return provider.get_tracer("twoapi.gateway")


class RequestSpans:
    """The spans of one request; every method is a no-op without a tracer."""

    __slots__ = ("_attempt", "_root", "_tracer")

    def __init__(self, tracer: trace.Tracer | None, request_id: str, model: str, stream: bool):
        self._tracer = tracer
        self._root: Any = None
        self._attempt: Any = None
        if tracer is not None:
            self._root = tracer.start_span(
                f"chat {model}",
                kind=trace.SpanKind.SERVER,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "twoapi.request_id": request_id,
                    "twoapi.stream": stream,
                },
            )

    def attempt_started(self, attempt: int, provider: str, model: str) -> None:
        if self._tracer is None:
            return
        self._attempt = self._tracer.start_span(
            f"chat {provider}/{model}",
            context=trace.set_span_in_context(self._root),
            kind=trace.SpanKind.CLIENT,
            attributes={"gen_ai.system": provider, "gen_ai.request.model": model, "twoapi.attempt": attempt},
        )

    def attempt_ended(self, error_code: str | None = None) -> None:
        if self._attempt is None:
            return
        if error_code:
            self._attempt.set_attribute("error.type", error_code)
            self._attempt.set_status(trace.StatusCode.ERROR, error_code)
        self._attempt.end()
        self._attempt = None

    def finish(self, status: int, **attributes: Any) -> None:
        if self._root is None:
            return
        self.attempt_ended()
        self._root.set_attribute("http.response.status_code", status)
        for name, value in attributes.items():
            if value is not None:
                self._root.set_attribute(name, value)
        if status >= 400:
            self._root.set_status(trace.StatusCode.ERROR)
        self._root.end()
