"""`twoapi projections status` and `GET /admin/projections` show the analytics
projection (position, ledger head, lag, state) beside the tenancy projection, and say
so, rather than fail, when analytics is off or its store or worker cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from analytics.config import AnalyticsConfig
from analytics.projection import AnalyticsProjection
from analytics.store import AnalyticsStore, migrate
from ledger.application import Ledger
from tests.analytics.conftest import ADMIN_TOKEN, seed_tenants, start_analytics_gateway
from tests.analytics.synthetic import seed_ledger, write_requests
from tests.support import free_port

TWOAPI = str(Path(sys.executable).with_name("twoapi"))
HOLD = """
import sys, clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def projections(url: str) -> dict[str, dict]:
    response = httpx.get(url + "/admin/projections", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text
    lines = response.json()["data"]
    assert [line["name"] for line in lines] == ["tenancy", "analytics"]
    return {line["name"]: line for line in lines}


def cli_status(data_dir: Path, **env: str) -> dict[str, dict]:
    environment = {**os.environ, "TWOAPI_DATA_DIR": str(data_dir), "PORT": str(free_port()), **env}
    for name in ("DATABASE_URL", "CLICKHOUSE_URL", "TWOAPI_ANALYTICS", "TWOAPI_ANALYTICS_URL"):
        if name not in env:
            environment.pop(name, None)
    done = subprocess.run([TWOAPI, "projections", "status"], env=environment, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # one JSON line per projection
    assert [line["name"] for line in lines] == ["tenancy", "analytics"]
    return {line["name"]: line for line in lines}


def caught_up_while_quiet(gw) -> tuple[dict[str, dict], int]:
    """What the endpoint shows once the projection has caught up, with the ledger's head
    read after it. The projection thread also seals the ledger in the background (first
    ~0.5 s after start, then every 10 s): a seal landing between the two reads moves the
    head, so the pair is read again until no seal came between them."""
    for _ in range(20):
        gw.wait_caught_up()
        shown = projections(gw.url)
        ledger = Ledger.open(None, gw.gateway.settings.data_dir)
        try:
            head = ledger.recorder.max_notification_id()
        finally:
            ledger.close()
        if shown["analytics"]["head"] == head:
            break
    return shown, head


# -- GET /admin/projections -----------------------------------------------------------------------


def test_admin_projections_shows_the_analytics_position_and_lag(sqlite_analytics_gateway):
    gw = sqlite_analytics_gateway
    httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {gw.keys['acme'][0]}"},
               json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    shown, head = caught_up_while_quiet(gw)
    analytics = shown["analytics"]
    assert analytics["position"] == analytics["head"] == head
    assert analytics["pending_events"] == analytics["lag_events"] == 0 and analytics["lag_seconds"] == 0
    assert analytics["state"] == "caught_up" and analytics["engine"] == "chdb"
    assert shown["tenancy"]["head"] == head  # the tenancy line is as it was


def test_admin_projections_says_analytics_is_off(tmp_path, simulator, monkeypatch):
    monkeypatch.setenv("TWOAPI_ANALYTICS", "off")
    monkeypatch.delenv("TWOAPI_ANALYTICS_URL", raising=False)
    gw = start_analytics_gateway(tmp_path, simulator.url, None, keys=seed_tenants(None, tmp_path / "data", ("acme",)))
    try:
        analytics = projections(gw.url)["analytics"]
    finally:
        gw.gateway.stop()
    assert analytics["state"] == "off" and analytics["position"] is None
    assert "TWOAPI_ANALYTICS" in analytics["detail"]


def test_admin_projections_says_the_analytics_worker_is_unreachable(tmp_path, simulator, monkeypatch):
    monkeypatch.delenv("TWOAPI_ANALYTICS", raising=False)
    monkeypatch.setenv("TWOAPI_ANALYTICS_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    gw = start_analytics_gateway(tmp_path, simulator.url, None, keys=seed_tenants(None, tmp_path / "data", ("acme",)))
    try:
        shown = projections(gw.url)
    finally:
        gw.gateway.stop()
    assert shown["analytics"]["state"] == "unavailable" and shown["analytics"]["position"] is None
    assert "not answering" in shown["analytics"]["detail"]
    assert shown["tenancy"]["position"] > 0


# -- twoapi projections status ----------------------------------------------------------------------


def test_cli_shows_the_analytics_position_and_lag_from_the_store(tmp_path):
    data = tmp_path / "data"
    ledger = Ledger.open(None, data)
    try:
        write_requests(ledger, seed_ledger(ledger, ("acme", "globex")), 40)
        store = AnalyticsStore.open(AnalyticsConfig(data_dir=data))
        try:
            migrate(store)
            projection = AnalyticsProjection(ledger, store, batch_size=100)
            projection.step()  # one batch shipped, the rest waiting
            position = projection.position().position
        finally:
            store.close()
        head = ledger.recorder.max_notification_id()
    finally:
        ledger.close()
    assert 0 < position < head
    analytics = cli_status(data)["analytics"]
    assert (analytics["position"], analytics["head"]) == (position, head)
    assert analytics["pending_events"] == analytics["lag_events"] == head - position
    assert analytics["lag_seconds"] > 0 and analytics["engine"] == "chdb"


def test_cli_asks_the_gateway_when_it_holds_the_store(sqlite_analytics_gateway):
    gw = sqlite_analytics_gateway
    gw.wait_caught_up()
    settings = gw.gateway.settings
    environment = {**os.environ, "TWOAPI_DATA_DIR": str(settings.data_dir), "PORT": str(settings.port),
                   "TWOAPI_ADMIN_TOKEN": ADMIN_TOKEN}
    environment.pop("DATABASE_URL", None)
    environment.pop("TWOAPI_ANALYTICS", None)
    done = subprocess.run([TWOAPI, "projections", "status"], env=environment, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    tenancy, analytics = (json.loads(line) for line in done.stdout.splitlines())
    assert tenancy["name"] == "tenancy"
    assert analytics["via"] == gw.url and analytics["state"] == "caught_up"
    assert analytics["position"] == analytics["head"] == tenancy["head"] and analytics["pending_events"] == 0


def test_cli_says_analytics_is_off_or_unavailable(tmp_path):
    data = tmp_path / "data"
    ledger = Ledger.open(None, data)
    try:
        seed_ledger(ledger, ("acme",))
    finally:
        ledger.close()
    never_ran = cli_status(data)["analytics"]  # no store in the data dir, no gateway
    assert never_ran["state"] == "off" and "no analytics store" in never_ran["detail"]
    assert not (data / "analytics").exists()  # a status command creates no store
    turned_off = cli_status(data, TWOAPI_ANALYTICS="off")["analytics"]
    assert turned_off["state"] == "off" and "TWOAPI_ANALYTICS=off" in turned_off["detail"]

    (data / "analytics").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str((data / "analytics").resolve())],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert holder.stdout.readline().strip() == b"held"
        shown = cli_status(data)  # the store is held and no gateway answers
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert shown["analytics"]["state"] == "unavailable" and shown["analytics"]["position"] is None
    assert "did not answer" in shown["analytics"]["detail"]
    assert shown["tenancy"]["head"] > 0


def test_cli_reports_a_bad_analytics_setting(tmp_path):
    analytics = cli_status(tmp_path / "data", TWOAPI_ANALYTICS="remote")["analytics"]  # remote without a URL
    assert analytics["state"] == "unavailable" and "TWOAPI_ANALYTICS_URL" in analytics["detail"]
