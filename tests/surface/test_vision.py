"""Images in chat: a data: URL and an https: URL reach each vision-capable provider in
its native shape (asserted on what the simulator received)."""

from __future__ import annotations

import openai
import pytest

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
DATA_URL = f"data:image/png;base64,{PNG}"
HTTPS_URL = "https://images.example.com/cats/tabby.webp?size=large"
VISION = ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"]


def ask(url: str, detail: str | None = None) -> list[dict]:
    image = {"url": url, **({"detail": detail} if detail else {})}
    return [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                         {"type": "image_url", "image_url": image}]}]


def native_image(provider: str, body: dict) -> dict:
    if provider == "openai":
        return body["messages"][0]["content"][1]
    if provider == "anthropic":
        return body["messages"][0]["content"][1]
    return body["contents"][0]["parts"][1]


@pytest.mark.parametrize("model", VISION)
def test_a_data_url_reaches_the_provider_in_its_own_shape(client, sim, model):
    reply = client.chat.completions.create(model=model, messages=ask(DATA_URL, "low"))
    assert reply.choices[0].message.content
    provider = model.split("/")[0]
    expected = {
        "openai": {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "low"}},
        "anthropic": {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        "google": {"inlineData": {"mimeType": "image/png", "data": PNG}},
    }[provider]
    assert native_image(provider, sim.last()["body"]) == expected


@pytest.mark.parametrize("model", VISION)
def test_an_https_url_reaches_the_provider_in_its_own_shape(client, sim, model):
    chunks = list(client.chat.completions.create(model=model, messages=ask(HTTPS_URL), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    provider = model.split("/")[0]
    expected = {
        "openai": {"type": "image_url", "image_url": {"url": HTTPS_URL}},
        "anthropic": {"type": "image", "source": {"type": "url", "url": HTTPS_URL}},
        "google": {"fileData": {"mimeType": "image/webp", "fileUri": HTTPS_URL}},
    }[provider]
    assert native_image(provider, sim.last()["body"]) == expected


def test_a_model_without_vision_gets_model_does_not_support_images(client, sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="anthropic/claude-3-5-haiku", messages=ask(DATA_URL))
    assert caught.value.code == "model_does_not_support_images"
    assert sim.requests(5) == []


@pytest.mark.parametrize(("url", "detail", "param"), [
    ("", None, "messages[0].content[1].image_url"),
    (HTTPS_URL, "ultra", "messages[0].content[1].image_url.detail"),
])
def test_malformed_image_parts_are_400s_naming_the_field(client, sim, url, detail, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=VISION[0], messages=ask(url, detail))
    assert caught.value.param == param


@pytest.mark.parametrize("model", VISION[1:])
def test_an_image_url_that_cannot_be_handed_on_is_a_400(client, sim, model):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ask("data:image/svg+xml,<svg/>"))
    assert "base64" in caught.value.message
