"""The stacks measured side by side, each started as its own process:

- `direct`: the provider simulator itself (OpenAI wire protocol), the floor.
- `bare`: the bare Quart + aiohttp pass-through (bench/passthrough.py).
- `gateway`: 2api (`twoapi serve`, one process), ledger on PostgreSQL, REDIS_URL set.
- `litellm`: the LiteLLM proxy, pip-installed by the harness into bench/.venvs/litellm,
  configured against the same simulator's OpenAI endpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import procs
from bench.procs import Proc

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
VENVS_DIR = BENCH_DIR / ".venvs"
TREES_DIR = BENCH_DIR / ".trees"
LITELLM_VERSION = os.environ.get("BENCH_LITELLM_VERSION", "1.108.7")
SIM_KEY = "sim-key"
BENCH_KEY = "2api_bench_key_0123456789abcdefghijklmnopqrstuvwx"
POSTGRES_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
UPSTREAM_MODEL = "gpt-4o-mini"
PROMPT = "Say hello to the benchmark in one short sentence."


@dataclass
class Stack:
    name: str
    base_url: str  # serves POST {base_url}/chat/completions
    model: str
    headers: dict[str, str]
    proc: Proc
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.base_url + "/chat/completions"

    def body(self, stream: bool) -> bytes:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 64,
        }
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return orjson.dumps(payload)

    def all_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", **self.headers}

    def describe(self) -> dict[str, Any]:
        return {
            "pid": self.proc.pid,
            "cpus": self.proc.cpus or "unpinned",
            "startup_to_first_200_s": round(self.proc.ready_s, 3) if self.proc.ready_s else None,
            "command": " ".join(self.proc.cmd),
            **self.info,
        }


def _first_chat(stack: Stack, timeout: float) -> None:
    procs.wait_http(stack.proc, stack.url, timeout=timeout, headers=stack.all_headers(), data=stack.body(False))


# ------------------------------------------------------------------------ simulator


def start_simulator(cpus: str | None, log_dir: Path) -> Stack:
    port = procs.free_port()
    proc = procs.start(
        "simulator",
        [sys.executable, "-m", "gateway.cli", "simulate", "--port", str(port)],
        cpus=cpus,
        log_dir=log_dir,
        cwd=REPO_DIR,
    )
    stack = Stack("direct", f"http://127.0.0.1:{port}/v1", UPSTREAM_MODEL, {"Authorization": f"Bearer {SIM_KEY}"},
                  proc, {"what": "the provider simulator (twoapi simulate), OpenAI wire protocol"})
    _first_chat(stack, 30)
    return stack


def sim_root(sim: Stack) -> str:
    return sim.base_url.removesuffix("/v1")


# ------------------------------------------------------------------------ bare pass-through


def start_bare(sim: Stack, cpus: str | None, log_dir: Path) -> Stack:
    port = procs.free_port()
    proc = procs.start(
        "bare",
        [sys.executable, "-m", "bench.passthrough", "--port", str(port), "--upstream", sim.base_url],
        cpus=cpus,
        log_dir=log_dir,
        cwd=REPO_DIR,
    )
    stack = Stack("bare", f"http://127.0.0.1:{port}/v1", UPSTREAM_MODEL, {}, proc,
                  {"what": "Quart + aiohttp pass-through, Hypercorn + uvloop, no auth/events (bench/passthrough.py)"})
    _first_chat(stack, 30)
    return stack


# ------------------------------------------------------------------------ 2api


def bench_schema() -> str:
    return "bench_" + time.strftime("%Y%m%d_%H%M%S") + "_" + uuid.uuid4().hex[:6]


# Limits the bench never reaches, so that every request takes its rate-limit buckets
# in Redis (requests and tokens per minute, one round trip) as a limited tenant's would.
BENCH_RPM = 100_000_000
BENCH_TPM = 1_000_000_000


def prepare_gateway_ledger(database_url: str, data_dir: Path) -> None:
    """Create the ledger's tables, the demo tenant (with credits and rate limits) and
    the bench key."""
    from gateway.bootstrap import DEMO_TENANT, ensure_demo_tenant
    from ledger.application import Ledger

    ledger = Ledger.open(database_url, data_dir)
    try:
        ensure_demo_tenant(ledger, BENCH_KEY)
        ledger.set_tenant_limits(DEMO_TENANT, rpm=BENCH_RPM, tpm=BENCH_TPM, monthly_cap=None)
    finally:
        ledger.close()


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# The serving process as deployed for throughput: the analytics projection (chDB) runs in
# its own process (`twoapi analytics run`), never in a gateway worker (DESIGN.md).
GATEWAY_ENV = {"TWOAPI_ANALYTICS": "off"}


def baseline_tree(rev: str) -> tuple[Path, str]:
    """The source of commit `rev` (`git archive`, unpacked once under bench/.trees/),
    so that a run measures the working tree and an earlier commit side by side. "."
    is the working tree itself (to compare two settings of the same code: --base-env)."""
    if rev == ".":
        return REPO_DIR, "working-tree"
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO_DIR, capture_output=True, text=True,
                         check=True).stdout.strip()
    tree = TREES_DIR / sha
    if not (tree / "gateway" / "cli.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", "--format=tar", sha], cwd=REPO_DIR, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree, sha


def start_gateway(sim: Stack, cpus: str | None, log_dir: Path, schema: str,
                  extra_env: dict[str, str] | None = None, name: str = "gateway",
                  tree: Path | None = None, rev: str | None = None) -> Stack:
    """2api as one `twoapi serve` process; `extra_env` on top of the bench's settings;
    `tree`: run the code of that source tree (an earlier commit, see baseline_tree)."""
    database_url = f"{POSTGRES_URL}?schema={schema}"
    data_dir = log_dir / f"{name}-data"
    prepare_gateway_ledger(database_url, data_dir)
    port = procs.free_port()
    root = sim_root(sim)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "TWOAPI_DATA_DIR": str(data_dir),
        "OPENAI_API_KEY": SIM_KEY,
        "OPENAI_BASE_URL": sim.base_url,
        "ANTHROPIC_API_KEY": SIM_KEY,
        "ANTHROPIC_BASE_URL": root,
        "GOOGLE_API_KEY": SIM_KEY,
        "GOOGLE_BASE_URL": root,
        "PYTHONUNBUFFERED": "1",
        **({"PYTHONPATH": str(tree)} if tree else {}),
        **(extra_env or {}),
    }
    proc = procs.start(
        name,
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", "1"],
        cpus=cpus,
        log_dir=log_dir,
        env=env,
        cwd=tree or REPO_DIR,
    )
    stack = Stack(
        name,
        f"http://127.0.0.1:{port}/v1",
        "openai/" + UPSTREAM_MODEL,
        {"Authorization": f"Bearer {BENCH_KEY}"},
        proc,
        {
            "what": "2api, twoapi serve (Hypercorn + uvloop, 1 process), request log at info to a file",
            "ledger": f"PostgreSQL schema {schema}",
            "redis_url": REDIS_URL,
            "rate_limits": f"tenant {BENCH_RPM:,} requests and {BENCH_TPM:,} tokens per minute, in Redis",
            "env_overrides": dict(extra_env or {}),
            "code": f"commit {rev} (bench/.trees/{rev})" if rev else "the working tree",
        },
    )
    try:
        _first_chat(stack, 60)
    except BaseException:
        proc.stop()  # never leave a gateway that did not come up running
        raise
    return stack


# ------------------------------------------------------------------------ LiteLLM


def litellm_python() -> Path:
    return VENVS_DIR / "litellm" / "bin" / "python"


def ensure_litellm(log: Any = sys.stderr) -> dict[str, Any]:
    """Install `litellm[proxy]==LITELLM_VERSION` into bench/.venvs/litellm (once)."""
    venv = VENVS_DIR / "litellm"
    marker = venv / f".installed-{LITELLM_VERSION}"
    started = time.monotonic()
    if not marker.exists():
        print(f"bench: installing litellm[proxy]=={LITELLM_VERSION} into {venv} (once)", file=log, flush=True)
        if not litellm_python().exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
                       check=True)
        marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
    version = subprocess.run(
        [str(litellm_python()), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return {"version": version, "install_s": round(time.monotonic() - started, 1)}


def litellm_config(sim: Stack) -> str:
    return (
        "model_list:\n"
        f"  - model_name: {UPSTREAM_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{UPSTREAM_MODEL}\n"
        f"      api_base: {sim.base_url}\n"
        f"      api_key: {SIM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"
    )


def start_litellm(sim: Stack, cpus: str | None, log_dir: Path) -> Stack:
    installed = ensure_litellm()
    config = log_dir / "litellm-config.yaml"
    config.write_text(litellm_config(sim))
    port = procs.free_port()
    master_key = "sk-bench-" + uuid.uuid4().hex
    env: dict[str, str | None] = {
        "LITELLM_MASTER_KEY": master_key,  # it refuses to start without one; without a DB it is a string compare
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch at start-up
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
        "DATABASE_URL": None,  # no DB: LiteLLM's spend logging stays off (the lightest setup)
        "REDIS_URL": None,
    }
    proc = procs.start(
        "litellm",
        [str(VENVS_DIR / "litellm" / "bin" / "litellm"), "--config", str(config), "--port", str(port),
         "--host", "127.0.0.1", "--num_workers", "1"],
        cpus=cpus,
        log_dir=log_dir,
        env=env,
        cwd=log_dir,
    )
    stack = Stack(
        "litellm",
        f"http://127.0.0.1:{port}/v1",
        UPSTREAM_MODEL,
        {"Authorization": f"Bearer {master_key}"},
        proc,
        {"what": f"LiteLLM proxy {installed['version']}, 1 worker, master key, no DB (no spend logs)",
         "version": installed["version"]},
    )
    _first_chat(stack, 120)
    return stack
