"""POST /v1/images/generations through the openai SDK's images.generate, for OpenAI and
Gemini image models, metered per image in the ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal

import httpx
import openai
import pytest

from adapters.catalog import default_catalog
from ledger.pricing import PriceBook
from simulator.text import MESSAGE_OVERHEAD, REPLY_PRIMING, count_tokens
from tests.surface.conftest import client_for, events_of

BOOK = PriceBook.from_table({m.id: m.price for m in default_catalog().models})
PROMPT = "A lighthouse at dusk, watercolour"
PROMPT_TOKENS = count_tokens(PROMPT)  # what gpt-image-1 reports as input
GEMINI_PROMPT = REPLY_PRIMING + MESSAGE_OVERHEAD + PROMPT_TOKENS  # a one-turn generateContent


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize(("model", "options", "images", "tokens"), [
    ("openai/dall-e-3", {"response_format": "b64_json"}, 1, (0, 0)),
    ("openai/gpt-image-1", {"n": 2}, 2, (PROMPT_TOKENS, 2 * 1056)),
    ("google/gemini-2.5-flash-image", {"n": 2, "response_format": "b64_json"}, 2, (2 * GEMINI_PROMPT, 2 * 1290)),
])
def test_images_generate_is_answered_and_metered_per_image(gateway, simulator, model, options, images, tokens):
    raw = client_for(gateway).images.with_raw_response.generate(model=model, prompt=PROMPT, **options)
    answer = raw.parse()
    assert len(answer.data) == images
    assert png_size(base64.b64decode(answer.data[0].b64_json)) == (1024, 1024)

    events = events_of(gateway, raw.headers["x-request-id"])
    assert [e["event"] for e in events] == ["Received", "Routed", "AttemptStarted", "AttemptSucceeded",
                                            "UsageMetered", "Completed"]
    assert events[0]["endpoint"] == "images.generations"
    usage = events[4]
    assert (usage["images"], usage["input_tokens"], usage["output_tokens"], usage["source"]) == (
        images, *tokens, "provider")
    expected = BOOK.cost(model, tokens[0], tokens[1], 0, images=images)
    assert Decimal(usage["cost"]) == expected == Decimal(raw.headers["x-2api-cost"]) > 0
    if model == "openai/dall-e-3":
        assert expected == Decimal("0.04")  # per image, no tokens


def test_dall_e_urls_are_the_providers_and_fetchable(client, sim):
    answer = client.images.generate(model="openai/dall-e-3", prompt=PROMPT, size="1792x1024")
    image = answer.data[0]
    assert image.revised_prompt and image.url.startswith("http")
    assert png_size(httpx.get(image.url).content) == (1792, 1024)
    assert sim.last()["body"] == {"model": "dall-e-3", "prompt": PROMPT, "size": "1792x1024"}


@pytest.mark.parametrize("model", ["openai/gpt-image-1", "google/gemini-2.5-flash-image"])
def test_url_from_a_base64_only_provider_is_a_data_url(client, sim, model):
    answer = client.images.generate(model=model, prompt=PROMPT, response_format="url")
    url = answer.data[0].url
    assert url.startswith("data:image/png;base64,")
    assert png_size(base64.b64decode(url.split(",", 1)[1]))
    assert "response_format" not in str(sim.last()["body"])  # neither provider takes it


def test_gemini_size_is_an_aspect_ratio(client, sim):
    answer = client.images.generate(model="google/gemini-2.5-flash-image", prompt=PROMPT, size="1536x1024",
                                    response_format="b64_json")
    assert png_size(base64.b64decode(answer.data[0].b64_json)) == (1248, 832)  # Gemini's 3:2
    assert sim.last()["body"]["generationConfig"] == {"responseModalities": ["IMAGE"],
                                                      "imageConfig": {"aspectRatio": "3:2"}}


@pytest.mark.parametrize(("options", "fragment"), [
    ({"quality": "hd"}, "'quality' is not supported by google"),
    ({"style": "vivid"}, "'style' is not supported by google"),
    ({"size": "2048x1024"}, "is not supported by google"),
])
def test_gemini_refuses_what_it_cannot_honour(client, sim, options, fragment):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="google/gemini-2.5-flash-image", prompt=PROMPT, **options)
    assert fragment in caught.value.message
    assert sim.requests(5) == []


def test_models_without_images_get_model_not_supported(client, sim):
    for model in ("anthropic/claude-3-5-sonnet", "openai/gpt-4o"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.generate(model=model, prompt=PROMPT)
        assert caught.value.code == "model_not_supported"


def test_openai_refusals_come_back_as_its_400(client, sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="openai/dall-e-3", prompt=PROMPT, n=2)
    assert "Must be 1 for dall-e-3" in caught.value.message


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x", "n": 11}, "n"),
    ({"prompt": "x", "response_format": "png"}, "response_format"),
    ({"prompt": "x", "extra_body": {"seed": 4}}, "seed"),
])
def test_bad_requests_are_400s_naming_the_field(client, sim, body, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="openai/dall-e-3", **body)
    assert caught.value.param == param
