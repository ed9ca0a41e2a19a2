"""Known secrets and prompt text, used in a real run, appear nowhere afterwards: not
in the logs, not in the exported traces, not in any stored ledger row."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import psycopg

from tests.support import POSTGRES_BASE_URL, free_port, wait_until_healthy

TWOAPI = str(Path(sys.executable).with_name("twoapi"))
GATEWAY_KEY = "2api_secret_gateway_key_QWERTY0123456789abcdefghij"
PROVIDER_KEYS = {"OPENAI_API_KEY": "sk-secret-openai-9f8e7d", "ANTHROPIC_API_KEY": "sk-ant-secret-1a2b3c",
                 "GOOGLE_API_KEY": "AIza-secret-google-4d5e6f"}
MASTER_KEY = "master-key-secret-7777777777777777"
ADMIN_TOKEN = "admin-token-secret-5555"
PROMPT = "my confidential prompt about project NIGHTJAR-42"
SECRETS = [GATEWAY_KEY, MASTER_KEY, ADMIN_TOKEN, "NIGHTJAR-42", "confidential prompt", *PROVIDER_KEYS.values()]


def collector() -> tuple[http.server.ThreadingHTTPServer, list[bytes]]:
    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def test_no_secret_or_prompt_text_reaches_logs_traces_or_the_ledger(tmp_path, simulator, postgres_url):
    otlp, spans = collector()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))},
        **PROVIDER_KEYS,
        "OPENAI_BASE_URL": simulator.url + "/v1", "ANTHROPIC_BASE_URL": simulator.url,
        "GOOGLE_BASE_URL": simulator.url,
        "PORT": str(port), "TWOAPI_DATA_DIR": str(tmp_path), "DATABASE_URL": postgres_url,
        "TWOAPI_MASTER_KEY": MASTER_KEY, "TWOAPI_ADMIN_TOKEN": ADMIN_TOKEN,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp.server_address[1]}", "OTEL_BSP_SCHEDULE_DELAY": "100",
        "TWOAPI_LOG_LEVEL": "debug",
    }
    created = subprocess.run([TWOAPI, "keys", "create", "--tenant", "secretive"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    import json

    key = json.loads(created.stdout)["key"]
    subprocess.run([TWOAPI, "credits", "add", "--tenant", "secretive", "--amount", "50"], env=env,
                   capture_output=True, timeout=60, check=True)
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        gateway = subprocess.Popen([TWOAPI, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout=30)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        messages = [{"role": "system", "content": PROMPT}, {"role": "user", "content": PROMPT}]
        for model in ("openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet", "google/gemini-1.5-flash"):
            client.chat.completions.create(model=model, messages=messages)
            list(client.chat.completions.create(model=model, messages=messages, stream=True))
        for bad in (GATEWAY_KEY, "2api_" + PROMPT.replace(" ", "_")):
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"Authorization": f"Bearer {bad}"},
                       json={"model": "openai/gpt-4o-mini", "messages": messages})
        httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": PROMPT, "messages": messages})
        httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   content=b'{"model": "' + PROMPT.encode() + b'", broken')
        httpx.get(f"http://127.0.0.1:{port}/admin/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)
        otlp.shutdown()

    logs = log_path.read_text()
    assert '"event":"request"' in logs
    traces = b"".join(spans)
    assert b"gen_ai.request.model" in traces
    schema = postgres_url.split("schema=")[1]
    with psycopg.connect(POSTGRES_BASE_URL) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
        stored = "\n".join(
            repr(conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()) for table in tables
        )
    assert "ledger_events" in tables and "Received" in stored
    for secret in SECRETS:
        assert secret not in logs, f"{secret!r} in the logs"
        assert secret.encode() not in traces, f"{secret!r} in the traces"
        assert secret not in stored, f"{secret!r} in the ledger"
