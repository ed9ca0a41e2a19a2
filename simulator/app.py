"""The simulator app (every provider on one port, told apart by path) and ways to run it.

Base URLs as the official SDKs expect them: OpenAI `{url}/v1`, Anthropic `{url}`,
Gemini `{url}`. `GET /v1/models` is shared by OpenAI and Anthropic (and Gemini's `v1`):
the request's auth headers say whose list it wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass

from aiohttp import web

from . import anthropic, control, google, media, openai

SHUTDOWN_TIMEOUT_S = 1.0  # hung (`timeout` fault) requests must not hold up a stop
MAX_BODY_BYTES = 64 * 1024 * 1024  # room for inline images


async def _list_models(request: web.Request) -> web.Response:
    if anthropic.is_anthropic(request):
        return await anthropic.list_models(request)
    if google.is_google(request):
        return await google.list_models(request)
    return await openai.list_models(request)


async def _get_model(request: web.Request) -> web.Response:
    if anthropic.is_anthropic(request):
        return await anthropic.get_model(request)
    if google.is_google(request):
        return await google.get_model(request)
    return await openai.get_model(request)


def build_app() -> web.Application:
    """A fresh simulator with its own state (faults, latency, request log, prompt cache)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[control.STATE] = control.SimState()
    router = app.router
    router.add_post("/v1/chat/completions", openai.chat_completions)
    router.add_post("/v1/embeddings", openai.embeddings)
    router.add_post("/v1/images/generations", openai.images)
    router.add_get("/_sim/images/{name}", media.serve_image)
    router.add_post("/v1/messages", anthropic.messages)
    router.add_post("/v1/messages/count_tokens", anthropic.count_message_tokens)
    router.add_get("/v1/models", _list_models)
    router.add_get("/v1/models/{model}", _get_model)
    for version in ("v1beta", "v1alpha", "v1"):
        router.add_post(f"/{version}/models/{{target}}", google.model_action)
        if version != "v1":
            router.add_get(f"/{version}/models", google.list_models)
            router.add_get(f"/{version}/models/{{model}}", google.get_model)
    control.add_routes(app)
    app.on_shutdown.append(_release_held_requests)
    return app


async def _release_held_requests(app: web.Application) -> None:
    app[control.STATE].stopping = True


@dataclass(slots=True)
class RunningSimulator:
    """A simulator serving on the current event loop."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> control.SimState:
        return self.runner.app[control.STATE]

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_simulator(host: str = "127.0.0.1", port: int = 0) -> RunningSimulator:
    runner = web.AppRunner(build_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return RunningSimulator(runner, host, bound_port)


class ThreadedSimulator:
    """A simulator on its own event loop in a daemon thread, for synchronous callers."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = _new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(host, port), name="simulator", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._running: RunningSimulator | None = None
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._running is not None
        self.host = self._running.host
        self.port = self._running.port
        self.url = self._running.url

    def _run(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._running = self._loop.run_until_complete(start_simulator(host, port))
        except BaseException as error:
            self._error = error
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._running.stop())
            self._loop.close()

    @property
    def state(self) -> control.SimState:
        """The live state; touch it only through the control API from other threads."""
        assert self._running is not None
        return self._running.state

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def start_in_thread(host: str = "127.0.0.1", port: int = 0) -> ThreadedSimulator:
    return ThreadedSimulator(host, port)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve until interrupted (`twoapi simulate`)."""

    async def forever() -> None:
        running = await start_simulator(host, port)
        try:
            await asyncio.Event().wait()
        finally:
            await running.stop()

    with asyncio.Runner(loop_factory=_new_event_loop) as runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(forever())
