"""The taxonomy in code and in docs/errors.md are the same table."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.errors import TAXONOMY, error_envelope

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_docs_list_every_code_with_its_status_type_and_retryability():
    rows = {
        match[0]: (int(match[1]), match[2], match[3] == "yes")
        for match in re.findall(r"^\| `([a-z_]+)` \| (\d+) \| `([a-z_]+)` \| (yes|no) \|", DOC.read_text(), re.M)
    }
    assert rows == {code: (k.status, k.type, k.retryable) for code, k in TAXONOMY.items()}


def test_envelope_has_openai_shape():
    assert error_envelope("model_not_found", "no such model", "model") == {
        "error": {"message": "no such model", "type": "invalid_request_error", "code": "model_not_found",
                  "param": "model"}
    }
