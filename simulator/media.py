"""Deterministic embeddings and images, and checks of images sent in.

Embeddings (`embedding`): the vector of (model, text) is drawn from a PRNG seeded by
SHA-256 of both, rounded to float32 (so the float and base64 encodings carry exactly
the same numbers), and scaled to unit length. A shorter `dimensions` keeps the first
components; OpenAI's models and Gemini's text-embedding-004 rescale them to unit length
again, gemini-embedding-001 does not (as its documentation says: normalise
truncated vectors yourself).

Images (`png`): a solid-colour PNG of the requested size, its colour picked by SHA-256
of (model, prompt, index). `GET /_sim/images/{W}x{H}-{rrggbb}.png` serves the same
bytes, for answers that carry URLs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import random
import struct
import zlib
from array import array
from functools import lru_cache

from aiohttp import web


def embedding(model: str, text: str, full_dims: int, dims: int | None = None, renormalize: bool = True) -> list[float]:
    vector = _full_vector(model, text, full_dims)
    if dims is None or dims >= full_dims:
        return list(vector)
    part = vector[:dims]
    if not renormalize:
        return list(part)
    norm = math.sqrt(sum(v * v for v in part)) or 1.0
    return array("f", [v / norm for v in part]).tolist()


@lru_cache(maxsize=1024)
def _full_vector(model: str, text: str, dims: int) -> tuple[float, ...]:
    rng = random.Random(hashlib.sha256(f"{model}\x00{text}".encode()).digest())
    raw = [rng.uniform(-1.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return tuple(array("f", [v / norm for v in raw]).tolist())


def to_base64(vector: list[float]) -> str:
    return base64.b64encode(array("f", vector).tobytes()).decode()


def colour(model: str, prompt: str, index: int) -> str:
    return hashlib.sha256(f"{model}\x00{prompt}\x00{index}".encode()).hexdigest()[:6]


@lru_cache(maxsize=64)
def png(width: int, height: int, rgb: str) -> bytes:
    pixel = bytes.fromhex(rgb)
    row = b"\x00" + pixel * width
    raw = zlib.compress(row * height, 6)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def png_b64(width: int, height: int, rgb: str) -> str:
    return _b64(width, height, rgb)


@lru_cache(maxsize=64)
def _b64(width: int, height: int, rgb: str) -> str:
    return base64.b64encode(png(width, height, rgb)).decode()


async def serve_image(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        size, rgb = name.removesuffix(".png").split("-")
        width, height = (int(v) for v in size.split("x"))
        bytes.fromhex(rgb)
    except ValueError:
        return web.Response(status=404)
    if not (0 < width <= 4096 and 0 < height <= 4096 and len(rgb) == 6):
        return web.Response(status=404)
    return web.Response(body=png(width, height, rgb), content_type="image/png")


def image_url_path(width: int, height: int, rgb: str) -> str:
    return f"/_sim/images/{width}x{height}-{rgb}.png"


def valid_base64(data: object) -> bool:
    if not isinstance(data, str) or not data:
        return False
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def data_url_problem(url: str) -> str | None:
    """Why an image URL is not one a provider would fetch or decode, else None."""
    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep or not header.endswith(";base64"):
            return "a data URL must be base64-encoded"
        if header[5:-7] not in IMAGE_MEDIA_TYPES:
            return f"unsupported image type {header[5:-7]!r}"
        if not valid_base64(payload):
            return "the data URL's payload is not valid base64"
        return None
    if url.startswith(("https://", "http://")):
        return None
    return "expected an http(s) or a data: URL"
