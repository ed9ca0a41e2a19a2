"""Running the gateway: the simulator wiring for `--simulate`, then Hypercorn."""

from __future__ import annotations

import os
import sys

from hypercorn.config import Config
from hypercorn.run import run

from gateway.bootstrap import ensure_demo_tenant
from gateway.config import PROVIDER_ENV, Settings
from ledger.application import Ledger

SIMULATED_PROVIDER_KEY = "sim-key"


def point_providers_at(simulator_url: str) -> None:
    """Make every provider's base URL the simulator's (in this process's environment,
    which Hypercorn workers inherit)."""
    for name, (key_var, url_var, _) in PROVIDER_ENV.items():
        os.environ[url_var] = simulator_url + ("/v1" if name == "openai" else "")
        os.environ[key_var] = SIMULATED_PROVIDER_KEY


def serve(host: str, port: int, workers: int, simulate: bool) -> int:
    if simulate:
        from simulator.app import start_in_thread

        simulator = start_in_thread(host="127.0.0.1", port=int(os.environ.get("TWOAPI_SIM_PORT") or 0))
        point_providers_at(simulator.url)
    settings = Settings.from_env()
    ledger = Ledger.open(settings.database_url, settings.data_dir)
    access = ensure_demo_tenant(ledger, settings.demo_key) if simulate else None
    ledger.close()
    # With PostgreSQL or several workers the tenancy projection runs in a process of
    # its own beside the gateway's (gateway/projection_process.py).
    from gateway import projection_process

    with projection_process.beside_gateway(settings.database_url, workers):
        return _serve(host, port, workers, settings, access.key if access else None, simulate)


def _serve(host: str, port: int, workers: int, settings: Settings, key: str | None, simulate: bool) -> int:
    _announce(host, port, settings, key, simulate)

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.application_path = "gateway.asgi:app"
    config.workers = workers if workers > 1 else 0  # 0: serve in this process
    config.worker_class = _worker_class()
    config.accesslog = None
    config.errorlog = "-"
    config.keep_alive_timeout = 75
    config.graceful_timeout = 10
    # One analytics worker process owns the analytics store; the gateway's
    # processes reach it (docs/analytics.md, "Where chDB lives").
    from analytics.worker import beside_gateway

    with beside_gateway():
        return run(config)


def _worker_class() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _announce(host: str, port: int, settings: Settings, key: str | None, simulate: bool) -> None:
    url = f"http://{host}:{port}"
    shown_key = key or "<your 2api key: twoapi keys create --tenant NAME>"
    providers = ", ".join(sorted(settings.providers)) or "none configured"
    lines = [
        f"2api gateway on {url}  (providers: {providers}{'; simulated' if simulate else ''})",
        f"ledger: {(settings.database_url and 'PostgreSQL') or settings.data_dir / 'ledger.sqlite3'}",
    ]
    if key:
        lines.append(f"demo API key (shown once; set TWOAPI_DEMO_KEY to choose it): {key}")
    lines += [
        "",
        "Try it:",
        f"  curl {url}/v1/chat/completions -H 'Authorization: Bearer {shown_key}' \\",
        "    -H 'Content-Type: application/json' \\",
        '    -d \'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}\'',
        "",
        "  python -c \"from openai import OpenAI; "
        f"c = OpenAI(base_url='{url}/v1', api_key='{shown_key}'); "
        "print(c.chat.completions.create(model='anthropic/claude-3-5-sonnet', "
        "messages=[{'role': 'user', 'content': 'Hello!'}]).choices[0].message.content)\"",
        "",
    ]
    print("\n".join(lines), flush=True, file=sys.stdout)
