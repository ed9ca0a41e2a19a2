"""Test support: a real gateway served by Hypercorn in a thread, and store URLs."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psycopg
from hypercorn.asyncio import serve
from hypercorn.config import Config

from gateway.app import create_app
from gateway.config import PROVIDER_ENV, ProviderConfig, Settings

POSTGRES_BASE_URL = os.environ.get("TWOAPI_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def simulated_providers(simulator_url: str) -> dict[str, ProviderConfig]:
    return {
        name: ProviderConfig(name, "sim-key", simulator_url + ("/v1" if name == "openai" else ""))
        for name in PROVIDER_ENV
    }


def postgres_schema_url() -> tuple[str, str]:
    """A DATABASE_URL with a fresh schema of its own, and the schema's name."""
    schema = "t_" + uuid.uuid4().hex[:12]
    return f"{POSTGRES_BASE_URL}?schema={schema}", schema


def drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class RunningGateway:
    url: str
    settings: Settings
    thread: threading.Thread
    stop_event: asyncio.Event
    loop: asyncio.AbstractEventLoop
    app: object = None

    def run(self, coroutine, timeout: float = 10.0):
        """Run a coroutine on the gateway's own event loop (to inspect its state)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def api_url(self) -> str:
        return self.url + "/v1"

    def stop(self) -> None:
        if not self.thread.is_alive():  # stopped already (a test may stop it before teardown)
            return
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)


def start_gateway(settings: Settings, span_exporter=None) -> RunningGateway:
    port = free_port()
    settings = replace(settings, port=port)
    ready = threading.Event()
    holder: dict = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        stop_event = asyncio.Event()
        holder.update(loop=loop, stop_event=stop_event)
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.graceful_timeout = 2
        app = create_app(settings, span_exporter=span_exporter)
        holder["app"] = app
        ready.set()
        loop.run_until_complete(serve(app, config, shutdown_trigger=stop_event.wait))
        loop.close()

    thread = threading.Thread(target=run, daemon=True, name=f"gateway-{port}")
    thread.start()
    ready.wait(10)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url)
    return RunningGateway(url, settings, thread, holder["stop_event"], holder["loop"], holder["app"])


def wait_until_healthy(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"gateway at {url} did not become healthy")


def gateway_settings(data_dir: Path, simulator_url: str, database_url: str | None = None) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, providers=simulated_providers(simulator_url))
