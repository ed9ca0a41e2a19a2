"""Both SDKs install in clean environments (`pip install ./sdk/python` into a new
virtualenv, `npm install ./sdk/javascript` into a new npm project, and from the
packed tarball), and the README snippets run from those installs. Node and npm are
required: without them these tests fail, they do not skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from twoapi import TwoAPI

from gateway.errors import TAXONOMY
from tests.conftest import DEMO_KEY
from tests.sdk.readme import PLACEHOLDER_KEY, REPO, readme_snippet

PYTHON_SDK = REPO / "sdk" / "python"
JS_SDK = REPO / "sdk" / "javascript"


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required for the JavaScript SDK tests (Node 20+ with npm)")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "TWOAPI_", "NODE_PATH"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def expected_hello(module_gateway) -> str:
    return TwoAPI(api_key=DEMO_KEY, base_url=module_gateway.url).chat("Hello!").content


def test_pip_install_into_a_clean_virtualenv_then_the_readme_snippet(module_gateway, expected_hello, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", str(PYTHON_SDK)], tmp_path, clean_env())
    # Installed, not imported from the source tree: run from elsewhere, no PYTHONPATH.
    where = run([str(python), "-c", "import twoapi, pathlib; print(pathlib.Path(twoapi.__file__).parent)"],
                tmp_path, clean_env())
    installed = Path(where.strip())
    assert installed.is_relative_to(env_dir) and (installed / "py.typed").exists()
    requirements = run([str(python), "-m", "pip", "show", "twoapi"], tmp_path, clean_env())
    assert "Requires: httpx" in requirements

    script = tmp_path / "readme.py"
    script.write_text(readme_snippet("python").replace(PLACEHOLDER_KEY, DEMO_KEY))
    out = run([str(python), str(script)], tmp_path, clean_env(TWOAPI_BASE_URL=module_gateway.url))
    assert out == expected_hello + "\n"


def _story(gateway_url: str) -> str:
    with TwoAPI(api_key=DEMO_KEY, base_url=gateway_url).chat_stream("Tell me a story") as stream:
        return "".join(stream)


def test_npm_install_into_a_clean_project_then_the_readme_snippet(module_gateway, expected_hello, tmp_path):
    npm = tool("npm")
    node = tool("node")
    major = int(run([node, "--version"], tmp_path).strip().lstrip("v").split(".")[0])
    assert major >= 20, "the JavaScript SDK needs Node 20+"
    project = tmp_path / "app"
    project.mkdir()
    run([npm, "init", "-y"], project, clean_env())
    run([npm, "install", "--no-audit", "--no-fund", str(JS_SDK)], project, clean_env())
    manifest = json.loads((project / "node_modules" / "twoapi" / "package.json").read_text())
    assert manifest["name"] == "twoapi" and manifest["type"] == "module"
    assert not manifest.get("dependencies"), "the SDK has no runtime dependencies"

    script = project / "readme.mjs"
    script.write_text(readme_snippet("javascript").replace(PLACEHOLDER_KEY, DEMO_KEY))
    out = run([node, str(script)], project, clean_env(TWOAPI_BASE_URL=module_gateway.url))
    assert out == expected_hello + "\n" + _story(module_gateway.url)


def test_npm_pack_ships_the_code_and_types_and_installs_from_the_tarball(tmp_path):
    npm = tool("npm")
    node = tool("node")
    packed = json.loads(run([npm, "pack", "--json", "--pack-destination", str(tmp_path)], JS_SDK, clean_env()))
    files = {entry["path"] for entry in packed[0]["files"]}
    assert {"index.js", "index.d.ts", "package.json", "README.md"} <= files
    assert not any(path.startswith("test/") for path in files)
    project = tmp_path / "app"
    project.mkdir()
    run([npm, "init", "-y"], project, clean_env())
    run([npm, "install", "--no-audit", "--no-fund", str(tmp_path / packed[0]["filename"])], project, clean_env())
    check = ("import TwoAPI, { ModelNotFoundError, TAXONOMY } from 'twoapi';"
             "const c = new TwoAPI({ apiKey: '2api_x', baseURL: 'http://h:1/v1/' });"
             "console.log(JSON.stringify({ base: c.baseURL, name: ModelNotFoundError.name,"
             " codes: Object.keys(TAXONOMY).length }));")
    out = json.loads(run([node, "--input-type=module", "-e", check], project, clean_env()))
    assert out == {"base": "http://h:1", "name": "ModelNotFoundError", "codes": len(TAXONOMY)}


def test_the_javascript_taxonomy_mirrors_the_gateway(tmp_path):
    node = tool("node")
    module = json.dumps((JS_SDK / "index.js").as_uri())
    script = f"import {{ TAXONOMY }} from {module}; console.log(JSON.stringify(TAXONOMY));"
    js = json.loads(run([node, "--input-type=module", "-e", script], tmp_path))
    assert js == {code: [kind.status, kind.type, kind.retryable] for code, kind in TAXONOMY.items()}


def test_python_sdk_declares_what_it_needs():
    text = (PYTHON_SDK / "pyproject.toml").read_text()
    assert 'name = "twoapi"' in text and '"httpx' in text
    assert sys.version_info >= (3, 10)
