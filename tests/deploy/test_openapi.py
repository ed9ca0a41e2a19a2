"""docs/openapi.yaml equals the implementation: the public routes the Quart app
registers, the request fields the gateway accepts, the error codes; the gateway serves
it at /openapi.json; docs/api.md covers the same paths and fields."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.anthropic_api import MESSAGES_FIELDS
from gateway.app import create_app
from gateway.config import Settings
from gateway.errors import TAXONOMY
from gateway.routing import ROUTING_FIELDS
from gateway.validation import CHAT_FIELDS, EMBEDDING_FIELDS, IMAGE_FIELDS, REQUIRED_CHAT_FIELDS

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
METHODS = {"get", "post", "put", "patch", "delete"}
# Operator-facing (docs/api.md documents them), and Quart's static route.
NOT_PUBLIC = ("/admin", "/static/")


def registered_routes(tmp_path: Path) -> dict[str, set[str]]:
    app = create_app(Settings(data_dir=tmp_path))
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(NOT_PUBLIC):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return routes


def documented_routes() -> dict[str, set[str]]:
    return {path: {m for m in item if m in METHODS} for path, item in SPEC["paths"].items()}


def resolve(ref: str) -> dict:
    node = SPEC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def refs(node, found=None) -> list[str]:
    found = [] if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.append(value)
            else:
                refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)
    return found


def test_the_document_is_openapi_3_1_and_every_ref_resolves():
    assert SPEC["openapi"].startswith("3.1.")
    assert SPEC["info"]["title"] and SPEC["info"]["version"]
    for ref in refs(SPEC):
        assert ref.startswith("#/"), ref
        resolve(ref)
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            assert method in METHODS, (path, method)
            assert operation.get("responses"), (path, method)
            assert operation.get("operationId"), (path, method)
    ids = [op["operationId"] for item in SPEC["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_every_public_route_is_documented_and_every_documented_path_is_served(tmp_path):
    assert registered_routes(tmp_path) == documented_routes()


def test_chat_request_fields_are_the_validators():
    schema = SPEC["components"]["schemas"]["ChatRequest"]
    assert set(schema["properties"]) == set(CHAT_FIELDS)
    assert schema["required"] == list(REQUIRED_CHAT_FIELDS)
    assert schema["additionalProperties"] is False
    routing = SPEC["components"]["schemas"]["Routing"]
    assert set(routing["properties"]) == set(ROUTING_FIELDS)


def test_embeddings_and_images_request_fields_are_the_validators():
    embeddings = SPEC["components"]["schemas"]["EmbeddingsRequest"]
    assert set(embeddings["properties"]) == set(EMBEDDING_FIELDS)
    assert embeddings["required"] == ["model", "input"]
    images = SPEC["components"]["schemas"]["ImagesRequest"]
    assert set(images["properties"]) == set(IMAGE_FIELDS)
    assert images["required"] == ["model", "prompt"]


def test_messages_request_fields_are_the_translators():
    schema = SPEC["components"]["schemas"]["MessagesRequest"]
    assert set(schema["properties"]) == set(MESSAGES_FIELDS)
    assert schema["required"] == ["model", "max_tokens", "messages"]


def test_error_codes_are_the_taxonomy():
    codes = SPEC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert sorted(codes) == sorted(TAXONOMY)


def test_the_gateway_serves_the_document_at_openapi_json(module_gateway):
    response = httpx.get(module_gateway.url + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == SPEC


def test_the_packaged_copy_is_the_document():
    packaged = REPO / "gateway" / "openapi.yaml"
    assert packaged.is_symlink() and packaged.resolve() == (REPO / "docs" / "openapi.yaml").resolve()


@pytest.fixture(scope="module")
def api_md() -> str:
    return (REPO / "docs" / "api.md").read_text()


def test_api_reference_covers_every_path(api_md):
    for path, methods in documented_routes().items():
        for method in methods:
            assert f"{method.upper()} {path}" in api_md, f"docs/api.md lacks {method.upper()} {path}"


def test_api_reference_field_tables_match_the_validators(api_md):
    def table(heading: str) -> set[str]:
        section = api_md.split(heading, 1)[1].split("\n#", 1)[0]
        return set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))

    assert table("### Chat request fields") == set(CHAT_FIELDS)
    assert table("### Routing options") == set(ROUTING_FIELDS)
    assert table("### Messages request fields") == set(MESSAGES_FIELDS)
    assert table("### Embeddings request fields") == set(EMBEDDING_FIELDS)
    assert table("### Images request fields") == set(IMAGE_FIELDS)
    for code in TAXONOMY:
        assert f"`{code}`" in (REPO / "docs" / "errors.md").read_text()
