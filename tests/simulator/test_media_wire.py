"""Embeddings and image generation from the simulator, read by the official SDKs:
deterministic vectors and images, each provider's wire shape and refusals."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from simulator.media import embedding
from simulator.text import count_tokens


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", data[16:24])


def test_openai_embeddings_float_and_base64_carry_the_same_numbers(sim):
    client = sim.openai()
    decoded = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])  # SDK: base64
    floats = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"],
                                      encoding_format="float")
    assert [d.embedding for d in decoded.data] == [d.embedding for d in floats.data]
    assert len(floats.data[0].embedding) == 1536 and math.isclose(norm(floats.data[0].embedding), 1, rel_tol=1e-5)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 2
    again = client.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float")
    assert again.data[0].embedding == floats.data[0].embedding  # deterministic
    assert sim.requests(1)[0]["path"] == "/v1/embeddings"


def test_openai_dimensions_truncate_and_renormalise(sim):
    client = sim.openai()
    full = client.embeddings.create(model="text-embedding-3-large", input="x", encoding_format="float")
    short = client.embeddings.create(model="text-embedding-3-large", input="x", dimensions=8,
                                     encoding_format="float")
    first = full.data[0].embedding[:8]
    assert short.data[0].embedding == pytest.approx([v / norm(first) for v in first], rel=1e-5)
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="gpt-4o", input="x")


def test_gemini_embed_content_and_batch(sim):
    client = sim.genai()
    batch = client.models.embed_content(model="gemini-embedding-001", contents=["alpha", "beta"],
                                        config=genai_types.EmbedContentConfig(output_dimensionality=16))
    assert [len(e.values) for e in batch.embeddings] == [16, 16]
    assert batch.embeddings[0].values == pytest.approx(embedding("gemini-embedding-001", "alpha", 3072, 16,
                                                                 renormalize=False))
    assert norm(batch.embeddings[0].values) < 1  # gemini-embedding-001 leaves truncated vectors as they are
    assert batch.usage_metadata.prompt_token_count == 2
    older = client.models.embed_content(model="text-embedding-004", contents="alpha")
    assert len(older.embeddings[0].values) == 768 and older.usage_metadata is None
    single = httpx.post(sim.url + "/v1beta/models/text-embedding-004:embedContent", headers={"x-goog-api-key": "k"},
                        json={"content": {"parts": [{"text": "alpha"}]}}).json()
    assert single["embedding"]["values"] == older.embeddings[0].values
    with pytest.raises(genai.errors.ClientError):
        client.models.embed_content(model="gemini-2.0-flash", contents="x")


def test_gemini_batch_limits(sim):
    url = sim.url + "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    item = {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}}
    too_many = httpx.post(url, headers={"x-goog-api-key": "k"}, json={"requests": [item] * 101})
    assert too_many.status_code == 400 and "at most 100" in too_many.text
    wrong_model = httpx.post(url, headers={"x-goog-api-key": "k"},
                             json={"requests": [{**item, "model": "models/text-embedding-004"}]})
    assert wrong_model.status_code == 400


def test_openai_images_dall_e_urls_and_gpt_image_base64(sim):
    client = sim.openai()
    dalle = client.images.generate(model="dall-e-3", prompt="a red kite", size="1024x1792")
    assert dalle.data[0].revised_prompt == "A detailed image of: a red kite"
    assert png_size(httpx.get(dalle.data[0].url).content) == (1024, 1792)
    again = client.images.generate(model="dall-e-3", prompt="a red kite", size="1024x1792")
    assert again.data[0].url == dalle.data[0].url  # deterministic
    gpt = client.images.generate(model="gpt-image-1", prompt="a red kite", n=2)
    assert [png_size(base64.b64decode(d.b64_json)) for d in gpt.data] == [(1024, 1024)] * 2
    assert (gpt.usage.input_tokens, gpt.usage.output_tokens) == (count_tokens("a red kite"), 2 * 1056)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.images.generate(model="gpt-image-1", prompt="x", response_format="url")
    with pytest.raises(openai.BadRequestError, match="Supported values are"):
        client.images.generate(model="dall-e-2", prompt="x", size="1792x1024")
    sim.fault(provider="openai", mode="content_filter")
    with pytest.raises(openai.BadRequestError, match="safety system"):
        client.images.generate(model="dall-e-3", prompt="x")


def test_gemini_image_model_answers_an_inline_png(sim):
    client = sim.genai()
    reply = client.models.generate_content(model="gemini-2.5-flash-image", contents="a red kite",
                                           config=genai_types.GenerateContentConfig(
                                               response_modalities=["IMAGE"],
                                               image_config=genai_types.ImageConfig(aspect_ratio="16:9")))
    part = reply.candidates[0].content.parts[0]
    assert part.inline_data.mime_type == "image/png"
    assert png_size(part.inline_data.data) == (1344, 768)
    assert reply.usage_metadata.candidates_token_count == 1290
    with pytest.raises(genai.errors.ClientError, match="response modalities"):
        client.models.generate_content(model="gemini-2.0-flash", contents="x", config=genai_types.
                                       GenerateContentConfig(response_modalities=["IMAGE"]))
