"""Dockerfile and docker-compose.yml, checked without a Docker engine (none exists on
this machine): the compose file parses, its services are wired by environment
variables the code reads, its commands are real CLI commands; the Dockerfile is
multi-stage, slim, non-root, with a health check; and the container's start-up
sequence (`twoapi migrate && exec twoapi serve`, with the compose gateway's
environment pointed at local PostgreSQL and Redis) runs outside a container."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from gateway.cli import build_parser
from tests.deploy.envvars import REPO, service_reads
from tests.support import free_port

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
OUR_IMAGE = {name for name, service in SERVICES.items() if "build" in service}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}")


def interpolate(value: str, overrides: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} / ${VAR:?message}, with defaults (or overrides)."""
    def one(match: re.Match) -> str:
        name, default = match.group(1), match.group(2) or ""
        if overrides and name in overrides:
            return overrides[name]
        return "" if "?" in match.group(0).split(name, 1)[1][:2] else default

    return INTERPOLATION.sub(one, str(value))


def commands(service: dict) -> list[list[str]]:
    """The twoapi command lines a service runs (through `sh -c` or directly)."""
    command = service.get("command")
    if command is None:
        return []
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part.strip().removeprefix("exec ")) for part in command[2].split("&&")]
    return [command]


def dockerfile_instruction(name: str) -> str:
    lines = DOCKERFILE.replace("\\\n", " ").splitlines()
    found = [line for line in lines if line.startswith(name + " ")]
    assert found, f"the Dockerfile has no {name}"
    return found[-1][len(name) + 1:].strip()


def test_compose_has_every_service_and_the_dev_profile():
    assert {"gateway", "worker", "dashboards", "migrate", "postgres", "redis", "clickhouse", "adminer"} <= set(SERVICES)
    assert SERVICES["adminer"]["profiles"] == ["dev"]
    for name in ("gateway", "worker", "dashboards", "migrate", "postgres", "redis", "clickhouse"):
        assert "profiles" not in SERVICES[name], name
    assert {"gateway", "worker", "dashboards", "migrate"} <= OUR_IMAGE
    for name in ("postgres", "redis", "clickhouse"):
        assert SERVICES[name]["healthcheck"]["test"]


def test_every_variable_compose_sets_on_our_services_is_read_by_the_code():
    reads = service_reads()
    for name in OUR_IMAGE:
        unknown = sorted(set(SERVICES[name].get("environment") or {}) - reads)
        assert not unknown, f"{name} sets variables no code reads: {unknown}"


def test_services_are_wired_to_each_other_by_environment():
    env = {k: interpolate(v) for k, v in SERVICES["gateway"]["environment"].items()}
    assert urlsplit(env["DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(env["REDIS_URL"]).hostname == "redis"
    assert urlsplit(env["CLICKHOUSE_URL"]).hostname == "clickhouse"
    postgres = SERVICES["postgres"]["environment"]
    database = urlsplit(env["DATABASE_URL"])
    assert (database.username, database.path.lstrip("/")) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert urlsplit(env["CLICKHOUSE_URL"]).path.lstrip("/") == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_DB"]
    # One projecting analytics process; the gateways only query.
    assert env["TWOAPI_ANALYTICS"] == "query"
    assert SERVICES["worker"]["environment"]["TWOAPI_ANALYTICS"] == "owner"
    # Migrations run before anything that uses the stores.
    for name in ("gateway", "worker"):
        assert SERVICES[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert "twoapi migrate" in SERVICES["migrate"]["command"][2]
    assert "twoapi analytics migrate" in SERVICES["migrate"]["command"][2]
    assert "http://gateway:8080" in SERVICES["dashboards"]["command"]


def test_every_command_is_a_real_cli_command():
    parser = build_parser()
    lines = [line for name in OUR_IMAGE for line in commands(SERVICES[name])]
    lines += commands({"command": json.loads(dockerfile_instruction("CMD"))})
    assert len(lines) >= 6
    for line in lines:
        assert line[0] == "twoapi", line
        parser.parse_args(line[1:])  # exits (fails the test) on an unknown command or option


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck():
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", DOCKERFILE, re.M)
    assert len(stages) >= 2
    assert "slim" in re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M).group(1)
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert "COPY --from=build" in final
    user = re.search(r"^USER (\S+)$", final, re.M).group(1)
    assert user.split(":")[0] not in ("root", "0")
    assert "pip install" not in final  # the build stage does the installing
    healthcheck = json.loads(dockerfile_instruction("HEALTHCHECK").split("CMD", 1)[1])
    assert "/health" in " ".join(healthcheck)
    assert json.loads(dockerfile_instruction("CMD")) == ["sh", "-c", "twoapi migrate && exec twoapi serve"]
    # Everything the installed package reads from its source tree is copied.
    for path in ("adapters/", "analytics/", "dashboards/", "gateway/", "ledger/", "migrations/", "simulator/",
                 "docs/openapi.yaml"):
        assert f"COPY {path} {path}" in DOCKERFILE, path
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".env" in ignored


def test_compose_config_validates_with_docker_compose_when_installed(tmp_path):
    plugin = shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True)
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    elif plugin and plugin.returncode == 0:
        command = ["docker", "compose"]
    else:
        pytest.skip("no docker compose client here (the YAML checks above still ran)")
    env = {**os.environ, "TWOAPI_ADMIN_TOKEN": "x" * 32}
    base = [*command, "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml")]
    done = subprocess.run([*base, "config", "-q"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    dev = subprocess.run([*base, "--profile", "dev", "config", "--services"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "adminer" in dev.stdout.split()
    unset = {k: v for k, v in env.items() if k != "TWOAPI_ADMIN_TOKEN"}
    refused = subprocess.run([*base, "config", "-q"], env=unset, capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert refused.returncode != 0 and "TWOAPI_ADMIN_TOKEN" in refused.stderr


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["twoapi", *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"twoapi {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_the_containers_start_up_sequence_runs_outside_a_container(simulator, postgres_url, tmp_path):
    from twoapi import InsufficientBalanceError, TwoAPI  # on the path through tests/compat/fixtures.py

    port = free_port()
    overrides = {"TWOAPI_ADMIN_TOKEN": "admin-" + uuid.uuid4().hex}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TWOAPI_", "OPENAI_", "ANTHROPIC_", "GOOGLE_", "OTEL_"))
           and k not in ("DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL", "PORT")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # The compose gateway's environment, as it would be inside the container ...
    for name, value in SERVICES["gateway"]["environment"].items():
        env[name] = interpolate(value, overrides)
    # ... with the hosts of the compose network replaced by this machine's services.
    env.update(
        DATABASE_URL=postgres_url,
        REDIS_URL="redis://127.0.0.1:6379/0",
        TWOAPI_REDIS_PREFIX="deploy-" + uuid.uuid4().hex[:8],
        TWOAPI_ANALYTICS="off",  # no ClickHouse server here
        TWOAPI_DATA_DIR=str(tmp_path / "data"),
        PORT=str(port),
        OPENAI_API_KEY="sim-key", ANTHROPIC_API_KEY="sim-key", GOOGLE_API_KEY="sim-key",
        OPENAI_BASE_URL=simulator.url + "/v1", ANTHROPIC_BASE_URL=simulator.url, GOOGLE_BASE_URL=simulator.url,
    )
    env.pop("CLICKHOUSE_URL")
    startup = json.loads(dockerfile_instruction("CMD"))
    process = subprocess.Popen(startup, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("the gateway did not become healthy")

        healthcheck = json.loads(dockerfile_instruction("HEALTHCHECK").split("CMD", 1)[1])
        assert subprocess.run(healthcheck, env=env, timeout=10).returncode == 0

        issued = json.loads(_cli(env, "keys", "create", "--tenant", "acme"))
        _cli(env, "credits", "add", "--tenant", "acme", "--amount", "5.00", "--reference", "deploy-test")
        client = TwoAPI(api_key=issued["key"], base_url=url, max_retries=0)
        deadline = time.monotonic() + 15
        while True:  # the balance projection follows the ledger within moments
            try:
                response = client.chat("Hello!", model="openai/gpt-4o-mini")
                break
            except InsufficientBalanceError:
                assert time.monotonic() < deadline, "credits never reached the balance"
                time.sleep(0.2)
        assert response.content and response.provider == "openai"
        shown = _cli(env, "ledger", "show", response.request_id)
        assert '"Received"' in shown and '"UsageMetered"' in shown
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
