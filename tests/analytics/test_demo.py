"""`twoapi demo`: from nothing to non-empty analytics within seconds: several tenants
and keys, all three providers, streams, and injected faults."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.analytics.conftest import ADMIN_TOKEN
from tests.support import free_port

TWOAPI = str(Path(sys.executable).with_name("twoapi"))


def test_demo_fills_the_analytics_with_every_provider_and_tenant(tmp_path):
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "TWOAPI_DATA_DIR": str(tmp_path / "data"), "TWOAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen([TWOAPI, "demo", "--port", str(port), "--duration", "12", "--rate", "15",
                             "--no-dashboards"], env=env, stdout=(tmp_path / "demo.out").open("wb"),
                            stderr=(tmp_path / "demo.err").open("wb"))
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    url = f"http://127.0.0.1:{port}/admin/analytics"
    seen: dict = {}
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            try:
                health = {r["provider"]: r for r in httpx.get(url + "/provider_health", params={"since": "1h"},
                                                              headers=headers, timeout=5).json()["data"]}
                tenants = httpx.get(url + "/tenants", headers=headers, timeout=5).json()["data"]
                seen = {"providers": health, "tenants": {t["tenant"]: t for t in tenants}}
                if set(health) == {"openai", "anthropic", "google"} and any(
                        r["attempt_error_rate"] for r in health.values()) and len(seen["tenants"]) >= 4:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(1)
        assert set(seen.get("providers", {})) == {"openai", "anthropic", "google"}, seen
        assert any(r["attempt_error_rate"] > 0 for r in seen["providers"].values())  # faults were injected
        assert {"acme", "globex", "initech", "umbrella"} <= set(seen["tenants"])
        keys = httpx.get(url + "/keys", headers=headers, timeout=5).json()["data"]
        assert len(keys) >= 8
        streams = httpx.get(url + "/ledger", params={"event": "StreamSummarized", "since": "1h"}, headers=headers,
                            timeout=5).json()["data"]
        assert streams
    finally:
        demo.wait(60)  # it stops by itself after --duration, and stops its gateway
    assert demo.returncode == 0
    assert "sent" in (tmp_path / "demo.out").read_text()
