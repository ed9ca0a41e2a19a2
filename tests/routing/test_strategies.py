"""`model: "auto"` routing by cost, latency and quality, recorded and explainable."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from adapters.catalog import default_catalog
from gateway.cli import main as twoapi
from tests.routing.conftest import client_of, ledger_events

HI = [{"role": "user", "content": "hi"}]
CATALOG = default_catalog()
CHAT_MODELS = [m for m in CATALOG.models if m.supports("chat")]  # what `auto` ranks


def auto(gateway, strategy: str | None = None, **extra):
    body = {"routing": {"strategy": strategy}} if strategy else {}
    body.update(extra.pop("extra_body", {}))
    return client_of(gateway).chat.completions.with_raw_response.create(
        model="auto", messages=HI, extra_body=body, **extra
    )


def routed(gateway, raw) -> dict:
    return next(e for e in ledger_events(gateway, raw.headers["x-request-id"]) if e["event"] == "Routed")


def test_cost_picks_the_cheapest_capable_model(make_gateway, sim):
    gateway = make_gateway()
    raw = auto(gateway, "cost")
    cheapest = min(CHAT_MODELS, key=lambda m: (m.price["input"] * 6 + m.price["output"] * 256))
    assert raw.headers["x-2api-model"] == cheapest.id == "google/gemini-1.5-flash"
    assert raw.headers["x-2api-routing-strategy"] == "cost"
    event = routed(gateway, raw)
    scores = [Decimal(c["score"]) for c in event["candidates"] if c["excluded"] is None]
    assert len(scores) == len(CHAT_MODELS)
    assert event["chain"][0] == cheapest.id


def test_quality_picks_the_best_model_and_max_cost_caps_it(make_gateway, sim):
    gateway = make_gateway()
    best = max(CHAT_MODELS, key=lambda m: m.quality)
    assert auto(gateway, "quality").headers["x-2api-model"] == best.id
    capped = auto(gateway, extra_body={"routing": {"strategy": "quality", "max_cost": "0.0001"}})
    event = routed(gateway, capped)
    chosen = CATALOG.find(capped.headers["x-2api-model"])
    assert chosen.id != best.id
    excluded = {c["model"]: c["excluded"] for c in event["candidates"]}
    assert excluded[best.id].startswith("estimated cost over max_cost")
    allowed = [m for m in CHAT_MODELS if excluded[m.id] is None]
    assert chosen.quality == max(m.quality for m in allowed)


def test_capabilities_filter_candidates(make_gateway, sim):
    gateway = make_gateway()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    raw = client_of(gateway).chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": [{"type": "text", "text": "what is this"}, image]}],
        extra_body={"routing": {"strategy": "cost"}, "models": ["anthropic/claude-3-5-haiku", "openai/gpt-4o-mini"]},
    )
    event = routed(gateway, raw)
    assert event["candidates"][0]["excluded"] == "does not support vision"
    assert raw.headers["x-2api-model"] == "openai/gpt-4o-mini"


def test_an_image_for_a_model_without_vision_is_a_clear_400(make_gateway, sim):
    gateway = make_gateway()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.raises(openai.BadRequestError) as caught:
        client_of(gateway).chat.completions.create(
            model="anthropic/claude-3-5-haiku", messages=[{"role": "user", "content": [image]}]
        )
    assert caught.value.code == "model_does_not_support_images"


def test_latency_routing_shifts_traffic_when_a_model_slows_down(make_gateway, sim):
    gateway = make_gateway()
    pair = {"models": ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"], "routing": {"strategy": "latency"}}
    chosen = [auto(gateway, extra_body=pair).headers["x-2api-model"] for _ in range(4)]
    assert set(chosen) == set(pair["models"])  # each is tried (and measured) early
    fast_now = chosen[-1]
    slow = next(m for m in pair["models"] if m != fast_now)
    sim.latency(provider=CATALOG.find(fast_now).provider, ttft_ms=300, tokens_per_s=1000)
    later = [auto(gateway, extra_body=pair).headers["x-2api-model"] for _ in range(6)]
    assert later[-4:] == [slow] * 4


def test_unknown_routing_options_are_rejected_by_name(make_gateway, sim):
    gateway = make_gateway()
    with pytest.raises(openai.BadRequestError) as caught:
        auto(gateway, extra_body={"routing": {"strategy": "cheapest"}})
    assert caught.value.body["param"] == "routing.strategy"
    with pytest.raises(openai.BadRequestError) as caught:
        auto(gateway, extra_body={"routing": {"retries": 3}})
    assert caught.value.body["param"] == "routing.retries"


def test_explain_tells_the_routing_and_attempts_from_the_ledger(make_gateway, sim, monkeypatch, capsys):
    gateway = make_gateway()
    sim.fault(provider="google", mode="status", status=503, count=2)
    raw = auto(gateway, "cost")
    monkeypatch.setenv("TWOAPI_DATA_DIR", str(gateway.settings.data_dir))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert twoapi(["ledger", "explain", raw.headers["x-request-id"]]) == 0
    story = capsys.readouterr().out
    assert "routing: strategy cost; auto: google/gemini-1.5-flash has the lowest estimated cost" in story
    assert "attempt 1: google/gemini-1.5-flash (google)" in story
    assert "failed after" in story and "upstream_error HTTP 503 (retryable)" in story
    assert "retrying google/gemini-1.5-flash after" in story
    assert "succeeded at" in story and "completed: HTTP 200" in story
    assert raw.headers["x-2api-model"] in story
