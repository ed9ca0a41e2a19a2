"""A simulator for the simulator's own tests: one per session, reset before each test,
and the three official SDKs pointed at it (no retries, so faults surface as raised)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from simulator.app import ThreadedSimulator, start_in_thread

KEY = "sk-sim-test-secret-0123456789"


class Sim:
    """The running simulator plus its control API."""

    def __init__(self, server: ThreadedSimulator) -> None:
        self.server = server
        self.url = server.url
        self.http = httpx.Client(base_url=server.url, timeout=10)
        # A genai Client closes its connection pool when collected, even while its
        # `.models` is still in use: keep every client alive for the whole test.
        self._genai_clients: list[genai.Client] = []

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"/_sim/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def fault(self, **spec: Any) -> dict[str, Any]:
        return self.control("POST", "faults", spec)

    def latency(self, **spec: Any) -> dict[str, Any]:
        return self.control("POST", "latency", spec)

    def requests(self, last: int | None = None) -> list[dict[str, Any]]:
        return self.control("GET", "requests" + (f"?last={last}" if last is not None else ""))["requests"]

    def reset(self) -> None:
        self.control("POST", "reset")

    def openai(self, key: str = KEY, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **options)

    def anthropic(self, key: str = KEY, **options: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, **options)

    def genai(self, key: str = KEY, timeout_ms: int | None = None) -> genai.Client:
        client = genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=self.url, timeout=timeout_ms))
        self._genai_clients.append(client)
        return client


@pytest.fixture(scope="session")
def sim_server() -> Iterator[ThreadedSimulator]:
    server = start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def sim(sim_server: ThreadedSimulator) -> Iterator[Sim]:
    handle = Sim(sim_server)
    handle.reset()
    yield handle
    handle.reset()
    handle.http.close()
