"""`twoapi demo`: live, non-empty dashboards within a minute, with nothing configured.

Starts the provider simulator (in this process), a gateway (`twoapi serve`: it owns
the analytics store and runs the projection), the dashboards (`twoapi dashboards`),
seeds the demo tenants and keys in the ledger, and sends traffic with injected
faults (analytics/traffic.py) until Ctrl-C or `--duration`.

`twoapi demo --traffic --gateway URL [--simulator URL]` only sends the traffic, to a
gateway already running on the same ledger (the keys are issued in the ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from analytics.traffic import TENANTS, DemoKey, TrafficStats, run_traffic, seed
from ledger.application import Ledger


def run_demo(port: int, dashboards_port: int, duration_s: float | None, rate: float, dashboards: bool) -> int:
    from gateway.config import Settings
    from gateway.server import point_providers_at
    from simulator.app import start_in_thread

    simulator = start_in_thread(port=0)
    point_providers_at(simulator.url)  # for the gateway we start: it inherits this environment
    admin_token = os.environ.get("TWOAPI_ADMIN_TOKEN") or "2api_admin_" + secrets.token_urlsafe(16)
    os.environ["TWOAPI_ADMIN_TOKEN"] = admin_token
    settings = Settings.from_env()
    ledger = Ledger.open(settings.database_url, settings.data_dir)
    keys = seed(ledger)
    ledger.close()
    twoapi = str(Path(sys.executable).with_name("twoapi"))
    env = {**os.environ, "PORT": str(port)}
    children = [subprocess.Popen([twoapi, "serve", "--port", str(port)], env=env)]
    gateway_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(gateway_url)
        if dashboards:
            children.append(subprocess.Popen(
                [twoapi, "dashboards", "--port", str(dashboards_port), "--gateway", gateway_url], env=env))
        print("\n".join([
            "",
            f"2api demo: gateway {gateway_url}, simulator {simulator.url}",
            f"  dashboards:  http://127.0.0.1:{dashboards_port}" if dashboards else "  dashboards:  off",
            f"  admin token: {admin_token}",
            f"  a demo key:  {keys[0].secret}  (tenant {keys[0].tenant})",
            f"  tenants:     {', '.join(TENANTS)}  ({len(keys)} keys)",
            f"  traffic:     ~{rate:g} requests/s with faults every 12 s"
            + (f" for {duration_s:g} s" if duration_s else "; Ctrl-C stops"),
            "",
        ]), flush=True)
        stats = asyncio.run(_traffic_until_interrupted(gateway_url, keys, simulator.url, duration_s, rate))
        print(f"sent {stats.sent} requests ({stats.ok} ok, {stats.failed} failed, {stats.streams} streamed); "
              f"providers {stats.providers}", flush=True)
        if duration_s and dashboards:
            print("traffic done; the gateway and dashboards keep running until Ctrl-C", flush=True)
            _wait_for_interrupt()
    finally:
        for child in reversed(children):
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        simulator.stop()
    return 0


def run_traffic_only(gateway_url: str, simulator_url: str | None, duration_s: float | None, rate: float) -> int:
    from gateway.config import Settings

    settings = Settings.from_env()
    ledger = Ledger.open(settings.database_url, settings.data_dir)
    keys = seed(ledger)
    ledger.close()
    print(f"sending ~{rate:g} requests/s to {gateway_url} from {len(keys)} keys of {len(TENANTS)} tenants", flush=True)
    stats = asyncio.run(_traffic_until_interrupted(gateway_url, keys, simulator_url, duration_s, rate))
    print(f"sent {stats.sent} requests ({stats.ok} ok, {stats.failed} failed)", flush=True)
    return 0


async def _traffic_until_interrupted(gateway_url: str, keys: list[DemoKey], simulator_url: str | None,
                                     duration_s: float | None, rate: float) -> TrafficStats:
    stats = TrafficStats()
    task = asyncio.create_task(run_traffic(gateway_url, keys, simulator_url=simulator_url, duration_s=duration_s,
                                           rate=rate, stats=stats))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return stats


def _wait_healthy(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the gateway at {url} did not start")


def _wait_for_interrupt() -> None:
    done = False

    def stop(*_: Any) -> None:
        nonlocal done
        done = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not done:
        time.sleep(0.5)
