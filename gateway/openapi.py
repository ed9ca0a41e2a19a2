"""GET /openapi.json: the public API's OpenAPI document.

The document is written by hand in `docs/openapi.yaml` (`gateway/openapi.yaml` links
to it, so it ships inside the package) and kept equal to the routes and the request
field tables by tests/deploy/test_openapi.py. It is parsed once, on first request.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import orjson
import yaml
from quart import Blueprint, Response

openapi_api = Blueprint("openapi", __name__)


@cache
def document() -> dict:
    text = resources.files("gateway").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def _encoded() -> bytes:
    return orjson.dumps(document())


@openapi_api.get("/openapi.json")
async def openapi_json() -> Response:
    return Response(_encoded(), 200, content_type="application/json")
