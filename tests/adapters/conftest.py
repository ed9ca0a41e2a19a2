"""Fixtures for the adapter tests (helpers live in adapter_helpers.py)."""

from __future__ import annotations

import pytest
from adapter_helpers import FakeProvider
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.http import HttpClient


@pytest.fixture
async def provider():
    fake = FakeProvider()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server(shutdown_timeout=0.5)
    fake.server = server
    try:
        yield fake
    finally:
        await server.close()


@pytest.fixture
async def http():
    client = HttpClient()
    try:
        yield client
    finally:
        await client.close()
