"""OpenTelemetry spans per request and per attempt, with GenAI attributes."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.bootstrap import ensure_demo_tenant
from ledger.application import Ledger
from tests.conftest import DEMO_KEY
from tests.support import gateway_settings, start_gateway


@pytest.fixture
def traced(tmp_path: Path, simulator):
    settings = gateway_settings(tmp_path / "data", simulator.url)
    ledger = Ledger.open(None, settings.data_dir)
    ensure_demo_tenant(ledger, DEMO_KEY)
    ledger.close()
    exporter = InMemorySpanExporter()
    running = start_gateway(settings, span_exporter=exporter)
    yield running, exporter
    running.stop()


def test_a_request_has_a_server_span_and_an_attempt_span_with_genai_attributes(traced):
    gateway, exporter = traced
    client = openai.OpenAI(base_url=gateway.api_url, api_key=DEMO_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="anthropic/claude-3-5-sonnet", messages=[{"role": "user", "content": "hi"}]
    )
    usage = raw.parse().usage
    spans = {span.name: span for span in exporter.get_finished_spans()}
    root = spans["chat anthropic/claude-3-5-sonnet"]
    attempt = spans["chat anthropic/claude-3-5-sonnet-20241022"]
    assert attempt.parent.span_id == root.context.span_id
    assert root.attributes["twoapi.request_id"] == raw.headers["x-request-id"]
    assert root.attributes["gen_ai.request.model"] == "anthropic/claude-3-5-sonnet"
    assert root.attributes["gen_ai.system"] == "anthropic"
    assert root.attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert root.attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attempt.attributes["gen_ai.system"] == "anthropic"
    assert attempt.attributes["gen_ai.request.model"] == "claude-3-5-sonnet-20241022"
