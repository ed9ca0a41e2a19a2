"""The gateway as people run it: the `twoapi` command in its own process.

Covers the quick start (`twoapi serve --simulate`), the simulator as a separate
process reached through the base-URL variables, `twoapi ledger show`, the
durability contract under `kill -9`, and what the logs may never contain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import free_port, wait_until_healthy

TWOAPI = str(Path(sys.executable).with_name("twoapi"))
DEMO_KEY = "2api_process_demo_key_abcdefghijklmnopqrstuvwxyz012345"
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"]
SECRET_PROMPT = "my-secret-prompt-4f1d9c: tell me about otters"


def base_env(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env.pop("DATABASE_URL", None)
    env.update(TWOAPI_DATA_DIR=str(data_dir), TWOAPI_DEMO_KEY=DEMO_KEY, PYTHONUNBUFFERED="1")
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self.proc = subprocess.Popen(
            [TWOAPI, *args], env=env, stdout=self.stdout_path.open("wb"), stderr=self.stderr_path.open("wb")
        )

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_twoapi(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TWOAPI, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Process, dict[str, str]]]:
    port = free_port()
    env = {**base_env(tmp_path / "data"), "PORT": str(port)}
    gateway = Process(["serve", "--simulate"], env, tmp_path, "gateway")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, timeout=30)
        yield url, gateway, env
    finally:
        gateway.stop()


def test_serve_simulate_prints_url_and_demo_key_and_answers_every_provider(served):
    url, gateway, _ = served
    announcement = gateway.stdout_path.read_text()
    assert url in announcement and DEMO_KEY in announcement
    client = openai.OpenAI(base_url=url + "/v1", api_key=DEMO_KEY, max_retries=0)
    for model in MODELS:
        plain = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], stream=True
            )
            if chunk.choices
        )
        assert plain.choices[0].message.content == streamed != ""


def test_ledger_show_prints_a_requests_events_as_json_lines(served):
    url, _, env = served
    client = openai.OpenAI(base_url=url + "/v1", api_key=DEMO_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="google/gemini-1.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    shown = run_twoapi(["ledger", "show", raw.headers["x-request-id"]], env)
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [e["event"] for e in events][-2:] == ["UsageMetered", "Completed"]
    usage = raw.parse().usage
    metered = events[-2]
    assert (metered["input_tokens"], metered["output_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)


def test_logs_have_one_line_per_request_and_never_a_key_or_prompt(served):
    url, gateway, _ = served
    client = openai.OpenAI(base_url=url + "/v1", api_key=DEMO_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="anthropic/claude-3-5-sonnet", messages=[{"role": "user", "content": SECRET_PROMPT}]
    )
    list(client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": SECRET_PROMPT}], stream=True
    ))
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="2api_wrong_key_zzzz", max_retries=0).models.list()
    gateway.stop()
    logs = gateway.stderr_path.read_text()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    request_lines = [line for line in lines if line.get("event") == "request"]
    assert len(request_lines) == 2
    first = next(line for line in request_lines if line["request_id"] == raw.headers["x-request-id"])
    assert first["tenant"] == "demo" and first["provider"] == "anthropic" and first["status"] == 200
    assert first["input_tokens"] > 0 and first["output_tokens"] > 0 and first["attempts"] == 1
    for secret in (DEMO_KEY, "2api_wrong_key_zzzz", "sim-key", "otters", "4f1d9c"):
        assert secret not in logs


def test_gateway_reaches_a_separate_simulator_process_through_base_url_variables(tmp_path):
    sim_port, port = free_port(), free_port()
    env = base_env(tmp_path / "data")
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = Process(["simulate", "--port", str(sim_port)], env, tmp_path, "simulator")
    gateway = None
    try:
        wait_for(lambda: httpx.get(sim_url + "/_sim/requests?last=1").status_code == 200)
        env = {
            **env,
            "PORT": str(port),
            "OPENAI_BASE_URL": sim_url + "/v1",
            "ANTHROPIC_BASE_URL": sim_url,
            "GOOGLE_BASE_URL": sim_url,
            "OPENAI_API_KEY": "sk-real-looking",
            "ANTHROPIC_API_KEY": "sk-ant-real-looking",
            "GOOGLE_API_KEY": "AIza-real-looking",
        }
        created = run_twoapi(["keys", "create", "--tenant", "acme"], env)
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout)["key"]
        # A new tenant has no balance: without credits its requests get 402.
        assert run_twoapi(["credits", "add", "--tenant", "acme", "--amount", "5.00"], env).returncode == 0
        gateway = Process(["serve"], env, tmp_path, "gateway")
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout=30)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        for model in MODELS:
            assert client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}]).usage
            assert list(client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], stream=True
            ))
        seen = httpx.get(sim_url + "/_sim/requests?last=6").json()
        paths = [r["path"] for r in (seen["requests"] if isinstance(seen, dict) else seen)]
        assert any(p.endswith("/chat/completions") for p in paths)
        assert any(p.endswith("/messages") for p in paths)
        assert any(":generateContent" in p or ":streamGenerateContent" in p for p in paths)
    finally:
        if gateway:
            gateway.stop()
        simulator.stop()


def wait_for(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_kill_9_loses_no_request_whose_client_got_a_complete_response(tmp_path, store, request):
    database_url = request.getfixturevalue("postgres_url") if store == "postgres" else None
    port = free_port()
    env = {**base_env(tmp_path / "data", database_url), "PORT": str(port)}
    gateway = Process(["serve", "--simulate"], env, tmp_path, "gateway")
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, timeout=30)

    completed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop(index: int) -> None:
        client = openai.OpenAI(base_url=url + "/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
        model = MODELS[index % len(MODELS)]
        while not stop.is_set():
            try:
                if index % 2:
                    raw = client.chat.completions.with_raw_response.create(
                        model=model, messages=[{"role": "user", "content": f"n{index}"}], stream=True
                    )
                    list(raw.parse())  # only returns after data: [DONE]
                else:
                    raw = client.chat.completions.with_raw_response.create(
                        model=model, messages=[{"role": "user", "content": f"n{index}"}]
                    )
                    raw.parse()
            except (openai.APIError, httpx.HTTPError):
                continue
            with lock:
                completed.append(raw.headers["x-request-id"])

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(6)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(completed) >= 30, timeout=30)
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(10)
    stop.set()
    for thread in threads:
        thread.join(15)

    from ledger.application import Ledger
    from ledger.ids import parse_request_id

    ledger = Ledger.open(database_url, tmp_path / "data")
    missing = []
    for request_id in completed:
        names = [e["event"] for e in ledger.event_dicts(parse_request_id(request_id))]
        if names[-1:] != ["Completed"] or "UsageMetered" not in names:
            missing.append((request_id, names))
    ledger.close()
    assert len(completed) >= 30
    assert missing == []


def test_traces_are_exported_over_otlp_when_an_endpoint_is_set(tmp_path):
    """A stand-in OTLP/HTTP collector on loopback receives the gateway's spans."""
    import http.server

    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    port = free_port()
    env = {
        **base_env(tmp_path / "data"),
        "PORT": str(port),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    gateway = Process(["serve", "--simulate"], env, tmp_path, "gateway")
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout=30)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=DEMO_KEY, max_retries=0)
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        wait_for(lambda: any(path == "/v1/traces" for path, _ in received), timeout=10)
    finally:
        gateway.stop()
        collector.shutdown()
    exported = b"".join(body for path, body in received if path == "/v1/traces")
    assert b"gen_ai.request.model" in exported and b"openai/gpt-4o-mini" in exported
    assert DEMO_KEY.encode() not in exported
