"""The ways to run the simulator: on the caller's event loop, in a thread, as a process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import aiohttp
import httpx
import openai

from simulator.app import start_in_thread, start_simulator

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_start_simulator_serves_on_the_running_loop_and_stops():
    sim = await start_simulator()
    try:
        assert sim.url == f"http://127.0.0.1:{sim.port}" and sim.port > 0
        client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="k", max_retries=0)
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
        assert chunks[-1].choices[0].finish_reason == "stop"
        await client.close()
    finally:
        await sim.stop()


async def test_stopping_does_not_wait_for_requests_held_by_a_timeout_fault():
    sim = await start_simulator()
    async with aiohttp.ClientSession() as session:
        await session.post(sim.url + "/_sim/faults", json={"provider": "openai", "mode": "timeout"})
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}
        held = asyncio.create_task(
            session.post(sim.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"})
        )
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await sim.stop()
        assert time.monotonic() - started < 5
        held.cancel()


def test_each_simulator_has_its_own_state():
    first, second = start_in_thread(), start_in_thread()
    try:
        assert first.port != second.port
        httpx.post(first.url + "/_sim/faults", json={"provider": "openai", "mode": "status", "status": 500})
        assert httpx.get(first.url + "/_sim/faults").json()["faults"]
        assert httpx.get(second.url + "/_sim/faults").json()["faults"] == []
    finally:
        first.stop()
        second.stop()


def test_serve_runs_a_blocking_simulator_on_the_given_port():
    with socket_port() as port:
        pass
    code = f"from simulator.app import serve; serve('127.0.0.1', {port})"
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer k"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the simulator did not come up"
                time.sleep(0.1)
        assert response.status_code == 200 and response.json()["object"] == "list"
    finally:
        process.terminate()
        process.wait(timeout=10)


class socket_port:
    """A free TCP port (bound, then released for the child process to take)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_a_client_leaving_mid_stream_is_not_logged_as_a_server_error(sim, caplog):
    sim.latency(provider="openai", tokens_per_s=50)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", sim.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}) as r:
        next(r.iter_bytes())
    time.sleep(0.3)  # the simulator writes its next chunks into the closed connection
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
    assert sim.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
