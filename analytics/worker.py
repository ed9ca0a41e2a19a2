"""`twoapi analytics run`: the analytics projection as a process of its own.

It owns the analytics store (with chDB: the only process that opens the data path),
runs the projection, and, given a port, answers the gateway workers' queries at
`/internal/analytics/{query}` (bearer TWOAPI_ADMIN_TOKEN or TWOAPI_ANALYTICS_TOKEN;
bind it to localhost).
`twoapi serve` starts one beside its gateway process(es) and points them at it
(`TWOAPI_ANALYTICS_URL`), so no serving process loads the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from quart import Quart, Response, request

from analytics import queries
from analytics.config import AnalyticsConfig
from analytics.service import AnalyticsUnavailable, LocalAnalytics
from ledger.application import Ledger

log = structlog.get_logger("analytics.worker")


def create_worker_app(config: AnalyticsConfig, database_url: str | None, admin_token: str | None) -> Quart:
    from gateway.analytics_api import dumps  # the same JSON (exact Decimals) as the gateway's

    app = Quart("twoapi-analytics")
    analytics = LocalAnalytics(config, database_url)
    # The admin token, and the token `twoapi serve --workers N` shares with its workers.
    accepted_tokens = [t for t in (admin_token, os.environ.get("TWOAPI_ANALYTICS_TOKEN")) if t]
    holder: dict[str, Any] = {}

    @app.before_serving
    async def start() -> None:
        holder["ledger"] = await asyncio.to_thread(Ledger.open, database_url, config.data_dir)
        await analytics.start()

    @app.after_serving
    async def stop() -> None:
        await analytics.stop()
        holder["ledger"].close()

    def answer(status: int, body: Any) -> Response:
        return Response(dumps(body), status, content_type="application/json")

    def error(status: int, code: str, message: str, param: str | None = None) -> Response:
        return answer(status, {"error": {"code": code, "message": message, "param": param}})

    @app.get("/health")
    async def health() -> Response:
        return answer(200, {"status": "ok", "projection": analytics.projection_status()})

    @app.get("/internal/analytics/<name>")
    async def internal(name: str) -> Response:
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not any(
                hmac.compare_digest(token.encode(), accepted.encode()) for accepted in accepted_tokens):
            return error(401, "authentication_error", "Missing or wrong token.")
        params = {k: request.args.get(k, "") for k in request.args}
        # The gateway authenticated the caller and names the scope; this endpoint is
        # reachable only with the admin token.
        scope = queries.Scope(tenant=params.pop("scope_tenant")) if "scope_tenant" in params else queries.Scope()
        try:
            if name == "status":
                return answer(200, await analytics.status())
            if name == "reconciliation":
                return answer(200, await analytics.reconcile(params.get("tenant", ""), holder["ledger"]))
            if name not in queries.CATALOGUE:
                return error(404, "not_found", f"No analytics query {name!r}.")
            return answer(200, await analytics.query(name, params, scope))
        except queries.QueryError as bad:
            return error(400, "invalid_request", str(bad), bad.param)
        except AnalyticsUnavailable as down:
            return error(503, "analytics_unavailable", str(down))

    return app


# Beside `twoapi serve` the worker yields the CPU to serving, as the tenancy projection
# process does (gateway/projection_process.py): at its own priority its batches and
# queries share the gateway's core in bursts that show as the gateway's latency tail.
# An idle core it still gets in full; dashboards wait when the gateway is busy.
NICENESS = 10


def run_worker(config: AnalyticsConfig, database_url: str | None, admin_token: str | None,
               host: str, port: int | None, parent_pid: int | None = None) -> int:
    """Run the projection (and, with a port, the internal query API) until SIGTERM/SIGINT,
    or until the process `parent_pid` is gone."""
    if parent_pid:
        _stop_with_parent(parent_pid)
        with contextlib.suppress(OSError):
            os.nice(NICENESS)
    if port is None:
        return _run_projection_only(config, database_url)
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    app = create_worker_app(config, database_url, admin_token)
    hconfig = Config()
    hconfig.bind = [f"{host}:{port}"]
    hconfig.accesslog = None
    hconfig.graceful_timeout = 2  # its only clients are the gateway's processes, stopping too
    where = "server" if config.clickhouse_url else config.chdb_path
    print(f"analytics worker on http://{host}:{port} ({config.engine}: {where})", flush=True)
    asyncio.run(_serve_until_signal(serve, app, hconfig))
    return 0


async def _serve_until_signal(serve: Any, app: Quart, hconfig: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, hconfig, shutdown_trigger=stop.wait)


def _run_projection_only(config: AnalyticsConfig, database_url: str | None) -> int:
    from analytics.projection import ProjectionRunner

    runner = ProjectionRunner(config, database_url)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    runner.start()
    print(f"analytics projection running ({config.engine})", flush=True)
    while not done.wait(5):
        status = runner.status
        log.info("analytics_projection", state=status.state, position=status.position, lag_events=status.lag_events)
    runner.stop()
    return 0


@contextlib.contextmanager
def beside_gateway() -> Iterator[subprocess.Popen[bytes] | None]:
    """For `twoapi serve`: one analytics worker process owns the analytics store and
    runs the projection, and the gateway process(es), which inherit this process's
    environment, reach it rather than open the store themselves:

    * chDB: they forward analytics queries to it (TWOAPI_ANALYTICS_URL), so the
      engine is loaded once, by the only process that may hold its data path, and
      the projection's work never competes with serving for a gateway's GIL;
    * CLICKHOUSE_URL: they query the server themselves (TWOAPI_ANALYTICS=query) and
      only the analytics worker projects.

    Nothing is started when the operator set TWOAPI_ANALYTICS or TWOAPI_ANALYTICS_URL:
    their deployment decides (e.g. `TWOAPI_ANALYTICS=owner` for one process owning
    everything, or a worker of their own)."""
    if os.environ.get("TWOAPI_ANALYTICS") or os.environ.get("TWOAPI_ANALYTICS_URL"):
        yield None
        return
    os.environ.setdefault("TWOAPI_ANALYTICS_TOKEN", secrets.token_urlsafe(24))  # gateway <-> analytics worker
    command = [str(Path(sys.executable).with_name("twoapi")), "analytics", "run"]
    if os.environ.get("CLICKHOUSE_URL"):
        os.environ["TWOAPI_ANALYTICS"] = "query"
        child_env = {k: v for k, v in os.environ.items() if k != "TWOAPI_ANALYTICS"}
    else:
        port = _free_port()
        command += ["--port", str(port)]
        child_env = dict(os.environ)
        os.environ["TWOAPI_ANALYTICS_URL"] = f"http://127.0.0.1:{port}"
    command += ["--parent-pid", str(os.getpid())]  # it stops when we die, even by SIGKILL
    worker = subprocess.Popen(command, env=child_env)
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()


def _stop_with_parent(parent: int) -> None:
    """Started by `twoapi serve`: stop when it is gone. A gateway killed with SIGKILL
    cannot stop its analytics worker, and an orphan would keep holding the chDB data
    path against the next gateway's worker."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="analytics-parent-watch", daemon=True).start()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
