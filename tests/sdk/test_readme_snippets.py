"""The README's SDK snippets (the brief's, verbatim) run as written against a local
gateway: only the key is substituted, and the base URL comes from TWOAPI_BASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys

from twoapi import TwoAPI

from tests.conftest import DEMO_KEY
from tests.sdk.conftest import SDK_SRC
from tests.sdk.readme import BRIEF_JAVASCRIPT, BRIEF_PYTHON, PLACEHOLDER_KEY, readme_snippet


def test_readme_carries_the_briefs_snippets_verbatim():
    assert readme_snippet("python") == BRIEF_PYTHON
    assert readme_snippet("javascript") == BRIEF_JAVASCRIPT


def test_python_snippet_runs_as_written(module_gateway, module_ledger, tmp_path):
    script = tmp_path / "readme.py"
    script.write_text(readme_snippet("python").replace(PLACEHOLDER_KEY, DEMO_KEY))
    env = {**os.environ, "PYTHONPATH": str(SDK_SRC), "TWOAPI_BASE_URL": module_gateway.url}
    env.pop("TWOAPI_API_KEY", None)
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    expected = TwoAPI(api_key=DEMO_KEY, base_url=module_gateway.url).chat("Hello!").content
    assert run.stdout == expected + "\n"
