"""The projection's lag as metrics: OpenTelemetry gauges, and Prometheus text.

Gauges are observed on the meter provider given (tests pass one with an in-memory
reader). Without one, they are exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is
set, as the traces are; otherwise no provider is built and they cost nothing.
`prometheus_text` serves the same numbers at GET /admin/analytics/metrics for a
scraper.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

GAUGES = {
    "twoapi.analytics.projection.lag_events": ("lag_events", "{event}", "ledger events not yet in ClickHouse"),
    "twoapi.analytics.projection.lag_seconds": ("lag_seconds", "s", "age of the oldest event not yet shipped"),
    "twoapi.analytics.projection.position": ("position", "{event}", "last ledger notification shipped"),
    "twoapi.analytics.projection.shipped_events": ("shipped_events", "{event}", "events shipped by this process"),
}


def default_meter_provider() -> MeterProvider | None:
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    service = os.environ.get("OTEL_SERVICE_NAME", "twoapi-gateway")
    return SdkMeterProvider(resource=Resource.create({"service.name": service}),
                            metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])


def register_gauges(provider: MeterProvider, status: Callable[[], dict[str, Any]]) -> None:
    meter = provider.get_meter("twoapi.analytics")
    for name, (field, unit, description) in GAUGES.items():
        meter.create_observable_gauge(name, callbacks=[_observer(status, field)], unit=unit, description=description)


def _observer(status: Callable[[], dict[str, Any]], field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        current = status()
        value = current.get(field)
        if isinstance(value, int | float):
            yield Observation(value, {"engine": str(current.get("engine", "")), "state": str(current.get("state"))})

    return observe


def prometheus_text(status: dict[str, Any]) -> str:
    lines = []
    labels = f'engine="{_label(status.get("engine"))}",state="{_label(status.get("state"))}"'
    for name, (field, _, description) in GAUGES.items():
        value = status.get(field)
        if not isinstance(value, int | float):
            continue
        metric = name.replace(".", "_")
        lines += [f"# HELP {metric} {description}", f"# TYPE {metric} gauge", f"{metric}{{{labels}}} {value}"]
    return "\n".join(lines) + "\n"


def _label(value: Any) -> str:
    return str(value or "").replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
