"""docs/api-surface.md says what the code does: its per-provider parameter table is
adapters/params.py's, and every field the endpoints take is documented."""

from __future__ import annotations

import re
from pathlib import Path

from adapters.params import RULES, SUPPORT
from gateway.validation import CHAT_FIELDS, EMBEDDING_FIELDS, IMAGE_FIELDS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "api-surface.md").read_text()


def test_the_parameter_table_is_the_codes():
    section = DOC.split("## Parameters per provider (chat)", 1)[1].split("\n## ", 1)[0]
    rows = {m[0]: (m[1], m[2], m[3]) for m in re.findall(r"^\| `([a-z_]+)` \| (.+?) \| (.+?) \| (.+?) \|$", section,
                                                          re.M)}
    assert rows == SUPPORT


def test_every_refused_parameter_is_in_the_table_as_a_400():
    for provider, rules in RULES.items():
        column = ("openai", "anthropic", "google").index(provider)
        for name, _, _ in rules:
            assert "400" in SUPPORT[name][column], (provider, name)


def test_every_field_of_every_endpoint_is_documented():
    for name in [*CHAT_FIELDS, *EMBEDDING_FIELDS, *IMAGE_FIELDS]:
        if name in ("routing", "models"):
            continue  # docs/routing.md
        assert f"`{name}`" in DOC, name
