"""The bare pass-through: Quart + one aiohttp session, served by Hypercorn (uvloop),
one process, exactly as the gateway is served, with none of its work (no auth, no
validation, no routing, no events, no logs). It is the floor the gateway is measured
against: what any Python gateway on this stack costs before doing anything.

    python -m bench.passthrough --port 8100 --upstream http://127.0.0.1:9090/v1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import aiohttp
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response, request

PASS_HEADERS = ("content-type",)


def create_app(upstream: str, api_key: str = "sim-key") -> Quart:
    app = Quart("passthrough")
    app.config.update(RESPONSE_TIMEOUT=None, BODY_TIMEOUT=60)
    url = upstream.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    state: dict[str, aiohttp.ClientSession] = {}

    @app.before_serving
    async def start() -> None:
        state["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    @app.after_serving
    async def stop() -> None:
        await state["session"].close()

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', 200, content_type="application/json")

    @app.post("/v1/chat/completions")
    async def chat() -> Response:
        body = await request.get_data(cache=False)
        resp = await state["session"].post(url, data=body, headers=headers)
        content_type = resp.headers.get("Content-Type", "application/json")
        if content_type.startswith("text/event-stream"):

            async def relay():
                try:
                    async for chunk in resp.content.iter_any():
                        yield chunk
                finally:
                    resp.release()

            response = Response(relay(), resp.status, content_type=content_type)
            response.timeout = None
            return response
        data = await resp.read()
        resp.release()
        return Response(data, resp.status, content_type=content_type)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.passthrough")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="OpenAI-style base URL, with /v1")
    args = parser.parse_args(argv)
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.accesslog = None
    config.keep_alive_timeout = 75
    app = create_app(args.upstream)
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(serve(app, config))


if __name__ == "__main__":
    main()
