"""A bounded load test through a real gateway process on PostgreSQL: at a fixed rate,
every response is a success the simulator did not fail, and the ledger holds exactly
one request per response."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psycopg

from tests.support import POSTGRES_BASE_URL, free_port, wait_until_healthy

TWOAPI = str(Path(sys.executable).with_name("twoapi"))
KEY = "2api_load_test_key_0123456789abcdefghijklmnopqrstuvw"
RATE, SECONDS = 80, 8  # bounded for CI; bench/soak.py runs the long version


async def fire(url: str) -> list[tuple[int, str | None, bool]]:
    """Open loop: requests start on schedule whether or not earlier ones finished."""
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "load"}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    results: list[tuple[int, str | None, bool]] = []

    async def one(session: aiohttp.ClientSession, stream: bool) -> None:
        async with session.post(url, json={**body, "stream": stream}, headers=headers) as response:
            text = await response.text()
            complete = response.status == 200 and (not stream or text.rstrip().endswith("[DONE]"))
            results.append((response.status, response.headers.get("x-request-id"), complete))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        tasks = []
        started = time.monotonic()
        for i in range(RATE * SECONDS):
            await asyncio.sleep(max(0.0, started + i / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one(session, stream=i % 3 == 0)))
        await asyncio.gather(*tasks)
    return results


def test_fixed_rate_load_has_no_errors_and_one_ledger_request_per_response(tmp_path, postgres_url):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "TWOAPI_DATA_DIR": str(tmp_path), "TWOAPI_DEMO_KEY": KEY,
           "DATABASE_URL": postgres_url, "REDIS_URL": "redis://127.0.0.1:6379/0"}
    gateway = subprocess.Popen([TWOAPI, "serve", "--simulate"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout=30)
        results = asyncio.run(fire(f"http://127.0.0.1:{port}/v1/chat/completions"))
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)

    assert len(results) == RATE * SECONDS
    assert [r for r in results if not r[2]] == []
    schema = postgres_url.split("schema=")[1]
    with psycopg.connect(POSTGRES_BASE_URL) as conn:
        stored = conn.execute(
            f'SELECT count(DISTINCT originator_id) FROM "{schema}".ledger_events '
            "WHERE topic LIKE %s", ("%Request.Completed",)
        ).fetchone()[0]
    assert stored == len(results)
