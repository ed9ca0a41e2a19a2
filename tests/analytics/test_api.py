"""The analytics API: who may ask what, tenant scoping by construction, hostile
input, parameter errors, CSV, metrics, and the analytics worker serving gateway
workers that never open the store themselves."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from analytics import queries
from analytics.config import AnalyticsConfig
from analytics.service import LocalAnalytics
from analytics.worker import NICENESS
from gateway.analytics_api import _cell
from tests.analytics.conftest import ADMIN_TOKEN, HOSTILE_TENANT, AnalyticsGateway, seed_tenants
from tests.support import free_port, gateway_settings, start_gateway

WIDE = {"since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"}
TWOAPI = str(Path(sys.executable).with_name("twoapi"))


def chat(url: str, key: str, n: int, model: str = "openai/gpt-4o-mini") -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    for i in range(n):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hi {i}"}])


@pytest.fixture
def busy(sqlite_analytics_gateway: AnalyticsGateway) -> AnalyticsGateway:
    gw = sqlite_analytics_gateway
    chat(gw.url, gw.keys["acme"][0], 3)
    chat(gw.url, gw.keys["globex"][0], 2, "anthropic/claude-3-5-haiku")
    chat(gw.url, gw.keys[HOSTILE_TENANT][1], 4, "google/gemini-1.5-flash")
    gw.wait_caught_up()
    return gw


def test_admin_routes_need_the_admin_token(busy):
    assert httpx.get(busy.url + "/admin/analytics/usage").status_code == 401
    wrong = httpx.get(busy.url + "/admin/analytics/usage", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "authentication_error"
    tenant_key = httpx.get(busy.url + "/admin/analytics/usage",
                           headers={"authorization": f"Bearer {busy.keys['acme'][0]}"})
    assert tenant_key.status_code in (401, 403)  # a tenant's key is not the admin token
    listing = httpx.get(busy.url + "/admin/analytics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    names = {entry["name"] for entry in listing["data"]}
    assert set(queries.CATALOGUE) | {"status", "metrics", "reconciliation"} == names


def test_tenants_see_only_their_own_data(busy):
    for tenant, keys in busy.keys.items():
        usage = busy.tenant(keys[0], "breakdown", by="tenant", **WIDE)
        assert usage.status_code == 200, usage.text
        assert [row["group"] for row in usage.json()["data"]] == [tenant]
        lines = busy.tenant(keys[0], "ledger", limit=1000, **WIDE).json()["data"]
        assert lines and {line["tenant"] for line in lines} == {tenant}
        listed = busy.tenant(keys[0], "keys").json()["data"]
        assert {k["tenant"] for k in listed} == {tenant} and len(listed) == 2


def test_a_tenant_cannot_widen_its_scope(busy):
    key = busy.keys["acme"][0]
    refused = busy.tenant(key, "totals", tenant="globex")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tenant"
    assert busy.tenant(key, "provider_health").status_code == 404  # admin-only queries do not exist here
    assert busy.tenant(key, "tenants").status_code == 404
    assert busy.tenant("2api_not_a_key", "totals").status_code == 401
    # Another tenant's request id gives nothing, not an error that confirms it exists.
    theirs = busy.admin("ledger", tenant="globex", event="Received", **WIDE).json()["data"][0]["request_id"]
    assert busy.tenant(key, "request", request_id=theirs).json()["data"] == []
    assert busy.admin("request", request_id=theirs).json()["data"]


def test_hostile_values_are_data_not_sql(busy):
    hostile_key = busy.keys[HOSTILE_TENANT][0]
    own = busy.tenant(hostile_key, "totals", **WIDE).json()["data"]
    assert [row["tenant"] for row in own] == [HOSTILE_TENANT] and own[0]["requests"] == 4
    by_admin = busy.admin("totals", tenant=HOSTILE_TENANT, **WIDE).json()["data"]
    assert [row["requests"] for row in by_admin] == [4]
    for name in ("model", "provider", "key_id", "event", "request_id"):
        for value in ("x' OR '1'='1", "') UNION ALL SELECT * FROM system.tables --", "\\'; DROP TABLE requests; --"):
            response = busy.admin("ledger", **{name: value}, **WIDE)
            assert response.status_code == 200 and response.json()["data"] == [], (name, value)
    budget = busy.admin("budget", tenant="nobody' OR tenant != '").json()["summary"]
    assert Decimal(budget["spend"]) == 0  # a tenant that does not exist, not every tenant
    assert busy.admin("totals", **WIDE).json()["data"]  # the tables are all still there


@pytest.mark.parametrize("params, param", [
    ({"bucket": "fortnight"}, "bucket"), ({"since": "last tuesday"}, "since"), ({"limit": "0"}, "limit"),
    ({"limit": "many"}, "limit"), ({"by": "tenant; DROP"}, "by"), ({"colour": "red"}, "colour"),
    ({"since": "1h", "until": "2h"}, "since"), ({"source": "cache"}, "source"),
])
def test_bad_parameters_are_400s_naming_the_parameter(busy, params, param):
    response = busy.admin("usage", **params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["param"] == param


def test_unknown_queries_are_404s_and_one_tenant_queries_need_a_tenant(busy):
    assert busy.admin("everything").status_code == 404
    assert busy.admin("budget").json()["error"]["param"] == "tenant"
    assert busy.admin("reconciliation").status_code == 400


def test_ledger_lines_as_csv(busy):
    response = busy.admin("ledger", tenant="acme", format="csv", limit=1000, **WIDE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    metered = [row for row in rows if row["event"] == "UsageMetered"]
    assert len(metered) == 3
    total = busy.admin("totals", tenant="acme", **WIDE).json()["data"][0]["cost"]
    assert sum(Decimal(row["amount"]) for row in metered) == Decimal(total)
    assert _cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"  # no formulas in spreadsheets
    assert _cell(Decimal("-1.5")) == "-1.5"  # numbers stay numbers


def test_status_and_metrics_show_the_lag(busy):
    status = busy.status()
    assert status["engine"] == "chdb" and status["role"] == "owner"
    assert status["lag_events"] == 0 and status["position"] == status["head"] > 0
    text = busy.admin("metrics").text
    assert f"twoapi_analytics_projection_position{{engine=\"chdb\",state=\"caught_up\"}} {status['position']}" in text
    assert "twoapi_analytics_projection_lag_events" in text


def test_lag_is_an_opentelemetry_gauge(tmp_path):
    reader = InMemoryMetricReader()
    analytics = LocalAnalytics(AnalyticsConfig(data_dir=tmp_path, role="owner"), None,
                               meter_provider=MeterProvider(metric_readers=[reader]))
    analytics.runner.status.lag_events = 42  # what the gauge observes is the runner's status
    from analytics.metrics import register_gauges

    register_gauges(analytics._meter_provider, analytics.projection_status)
    data = reader.get_metrics_data()
    points = {metric.name: metric.data.data_points[0].value
              for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics}
    assert points["twoapi.analytics.projection.lag_events"] == 42


def test_gateway_workers_query_through_the_analytics_worker(tmp_path, simulator, analytics_env, monkeypatch):
    """`twoapi analytics run --port` owns the store; a gateway with TWOAPI_ANALYTICS_URL
    opens no store and answers /admin and /v1 analytics through it, scoped the same."""
    data = tmp_path / "data"
    keys = seed_tenants(None, data, ("acme", "globex"))
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "TWOAPI_DATA_DIR": str(data), "TWOAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "TWOAPI_ANALYTICS_POLL_S": "0.05", "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen([TWOAPI, "analytics", "run", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=(tmp_path / "worker.err").open("wb"))
    monkeypatch.delenv("TWOAPI_ANALYTICS")
    monkeypatch.setenv("TWOAPI_ANALYTICS_URL", f"http://127.0.0.1:{port}")
    settings = replace(gateway_settings(data, simulator.url), admin_token=ADMIN_TOKEN)
    gateway = start_gateway(settings)
    try:
        gw = AnalyticsGateway(gateway, keys)
        chat(gw.url, keys["acme"][0], 3)
        chat(gw.url, keys["globex"][0], 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status = gw.status()
                if status.get("state") == "caught_up" and status.get("lag_events") == 0:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert status["role"] == "remote"
        totals = {row["tenant"]: row["requests"] for row in gw.admin("totals", **WIDE).json()["data"]}
        assert totals == {"acme": 3, "globex": 1}
        mine = gw.tenant(keys["globex"][0], "totals", **WIDE).json()["data"]
        assert [(row["tenant"], row["requests"]) for row in mine] == [("globex", 1)]
        assert gw.tenant(keys["globex"][0], "totals", tenant="acme").status_code == 400
        assert gw.admin("usage", bucket="fortnight").json()["error"]["param"] == "bucket"
        worker.terminate()
        worker.wait(15)
        down = gw.admin("totals")
        assert down.status_code == 503 and down.json()["error"]["code"] == "analytics_unavailable"
        chat(gw.url, keys["acme"][0], 1)  # chat does not need the analytics worker
    finally:
        gateway.stop()
        if worker.poll() is None:
            worker.kill()


def test_serve_starts_one_analytics_worker_beside_its_workers(tmp_path):
    """`twoapi serve --workers 2`: the gateway workers never open the chDB store; one
    analytics worker does, and answers their queries; it stops with the gateway.
    (With one worker it is the same: the serving process stays free of chDB.)"""
    port = free_port()
    key = "2api_two_workers_demo_key_0123456789abcdefghij"
    env = {"PATH": "/usr/bin:/bin", "TWOAPI_DATA_DIR": str(tmp_path / "data"), "TWOAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "TWOAPI_DEMO_KEY": key, "PORT": str(port), "TWOAPI_ANALYTICS_POLL_S": "0.05", "PYTHONUNBUFFERED": "1"}
    serve = subprocess.Popen([TWOAPI, "serve", "--simulate", "--workers", "2"], env=env,
                             stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.err").open("wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        from tests.support import wait_until_healthy

        wait_until_healthy(url, timeout=60)
        chat(url, key, 4)
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        deadline = time.monotonic() + 30
        totals: list = []
        while time.monotonic() < deadline:
            response = httpx.get(url + "/admin/analytics/totals", headers=headers)
            totals = response.json().get("data", []) if response.status_code == 200 else []
            if totals and totals[0]["requests"] == 4:
                break
            time.sleep(0.2)
        assert [(row["tenant"], row["requests"]) for row in totals] == [("demo", 4)]
        status = httpx.get(url + "/admin/analytics/status", headers=headers).json()
        assert status["role"] == "remote" and status["engine"] == "chdb"
        workers = subprocess.run(["pgrep", "-f", "analytics run --port", "-P", str(serve.pid)],
                                 capture_output=True, text=True).stdout.split()
        assert len(workers) == 1
        # Background work yields the CPU to serving: the worker runs niced.
        assert os.getpriority(os.PRIO_PROCESS, int(workers[0])) == os.getpriority(
            os.PRIO_PROCESS, serve.pid) + NICENESS
    finally:
        serve.terminate()
        serve.wait(30)
    _assert_gone(int(workers[0]))


def test_the_analytics_worker_stops_when_the_gateway_is_killed(tmp_path):
    """SIGKILL leaves the gateway no chance to stop its analytics worker; the worker
    notices alone, or it would keep holding the chDB data path against the next one."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "TWOAPI_DATA_DIR": str(tmp_path / "data"), "PORT": str(port)}
    serve = subprocess.Popen([TWOAPI, "serve", "--simulate"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        from tests.support import wait_until_healthy

        wait_until_healthy(f"http://127.0.0.1:{port}", timeout=60)
        workers: list[str] = []
        deadline = time.monotonic() + 20
        while not workers and time.monotonic() < deadline:
            workers = subprocess.run(["pgrep", "-f", "analytics run --port", "-P", str(serve.pid)],
                                     capture_output=True, text=True).stdout.split()
            time.sleep(0.1)
        assert len(workers) == 1
    finally:
        serve.kill()
        serve.wait(30)
    _assert_gone(int(workers[0]))


def _assert_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    assert not _alive(pid), "the analytics worker outlived its gateway"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state != "Z"  # a zombie has exited
