"""Restarting the analytics projection mid-batch, or stopping the store and starting it
again, leaves totals exact: no event lost, none counted twice, in the raw rows (with
and without FINAL) and in the rollups' materialized views.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from analytics.config import AnalyticsConfig
from analytics.projection import AnalyticsProjection
from analytics.store import AnalyticsStore
from ledger.application import Ledger
from tests.analytics.conftest import ADMIN_TOKEN, ledger_totals_by_request, seed_tenants, start_analytics_gateway
from tests.analytics.synthetic import Expected, seed_ledger, write_requests
from tests.support import free_port

TENANTS = ("acme", "globex", "initech")
TWOAPI = str(Path(sys.executable).with_name("twoapi"))


class Crash(Exception):
    pass


class CrashingProjection(AnalyticsProjection):
    """Crashes once, on its second batch, at `point`: the moment a process could die."""

    def __init__(self, *args, point: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.point = point
        self.batches = 0

    def _ship(self, events):
        self.batches += 1
        return super()._ship(events)

    def _save_state(self, position):
        if self.batches == 2 and self.point == "before_position":
            raise Crash(self.point)
        super()._save_state(position)

    def _insert(self, rows, token):
        if self.batches != 2 or self.point not in ("after_ledger_events", "after_attempts"):
            return super()._insert(rows, token)
        self.store.insert("ledger_events", _cols("EVENT"), rows.events, token + ":ledger_events")
        if self.point == "after_attempts":
            self.store.insert("attempts", _cols("ATTEMPT"), rows.attempts, token + ":attempts")
        raise Crash(self.point)


def _cols(name: str):
    from analytics import rows

    return getattr(rows, f"{name}_COLUMNS")


def assert_exact(store: AnalyticsStore, expected: Expected) -> None:
    for tenant in expected.requests:
        params = {"t": tenant}
        raw = store.query("SELECT count(), sum(cost), sum(output_tokens) FROM requests WHERE tenant = {t:String}",
                          params)[1][0]
        final = store.query("SELECT count(), sum(cost) FROM requests FINAL WHERE tenant = {t:String}", params)[1][0]
        rollup = store.query("SELECT sum(requests), sum(cost), sum(output_tokens) FROM usage_hourly"
                             " WHERE tenant = {t:String}", params)[1][0]
        metered = store.query("SELECT sum(amount) FROM ledger_events WHERE tenant = {t:String}"
                              " AND event = 'UsageMetered'", params)[1][0][0]
        want = (expected.requests[tenant], expected.cost[tenant], expected.output_tokens[tenant])
        assert raw == want, (tenant, "raw rows (no FINAL): a duplicate would show here")
        assert final == want[:2], (tenant, "FINAL")
        assert rollup == want, (tenant, "rollup")
        assert metered == want[1], (tenant, "ledger lines")
        daily = store.query("SELECT sum(requests), sum(cost) FROM usage_daily WHERE tenant = {t:String}",
                            params)[1][0]
        assert daily == want[:2], (tenant, "daily rollup")
    for rollup in ("provider_hourly", "latency_hourly", "latency_daily"):
        everyone = store.query(f"SELECT sum(requests) FROM {rollup}")[1][0][0]
        assert everyone == sum(expected.requests.values()), rollup


@pytest.mark.parametrize("point", ["after_ledger_events", "after_attempts", "before_position"])
def test_a_crash_mid_batch_then_a_restart_counts_everything_once(ledger, store, point):
    keys = seed_ledger(ledger, TENANTS)
    expected = write_requests(ledger, keys, 300)
    crashing = CrashingProjection(ledger, store, batch_size=400, point=point)
    with pytest.raises(Crash):
        crashing.catch_up()
    restarted = AnalyticsProjection(ledger, store, batch_size=400)  # a new process: state from the store
    assert restarted.position().pending  # it died with a batch in flight, and the store shows it
    restarted.catch_up()
    assert restarted.position().position == ledger.recorder.max_notification_id()
    assert not restarted.position().pending
    assert_exact(store, expected)


def test_batches_never_split_a_request_and_new_events_keep_flowing(ledger, store):
    keys = seed_ledger(ledger, TENANTS)
    expected = write_requests(ledger, keys, 120)
    projection = AnalyticsProjection(ledger, store, batch_size=37)  # pages end inside requests
    projection.catch_up()
    assert_exact(store, expected)
    write_requests(ledger, keys, 80, seed=9, expected=expected)
    projection.catch_up()
    assert_exact(store, expected)
    attempts = store.scalar("SELECT count() FROM attempts")
    started = store.scalar("SELECT count() FROM ledger_events WHERE event = 'AttemptStarted'")
    assert attempts == started


def test_kill_9_while_shipping_then_restart(tmp_path: Path):
    """The projection as its own process (`twoapi analytics run`), killed with SIGKILL
    while it ships small batches, three times, then restarted to the end."""
    data = tmp_path / "data"
    ledger = Ledger.open(None, data)
    keys = seed_ledger(ledger, TENANTS)
    expected = write_requests(ledger, keys, 240)
    head = ledger.recorder.max_notification_id()
    ledger.close()
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "TWOAPI_DATA_DIR": str(data), "TWOAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "TWOAPI_ANALYTICS_BATCH": "40", "TWOAPI_ANALYTICS_POLL_S": "0.05", "PYTHONUNBUFFERED": "1"}
    positions = []
    for round_ in range(4):
        worker = subprocess.Popen([TWOAPI, "analytics", "run", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=(tmp_path / f"worker{round_}.err").open("wb"))
        try:
            start = positions[-1] if positions else 0
            status = _wait_for(port, lambda s, start=start: s["position"] > start)
            if round_ < 3:
                time.sleep(0.15 * (round_ + 1))  # somewhere inside a later batch
                worker.kill()
                worker.wait(10)
                positions.append(status["position"])
            else:
                final = _wait_for(port, lambda s: s["position"] >= head and s["state"] == "caught_up", timeout=90)
                assert final["position"] == head
        finally:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(15)
    assert positions[-1] < head  # it really was killed before the end
    store = AnalyticsStore.open(AnalyticsConfig(data_dir=data))
    try:
        assert_exact(store, expected)
    finally:
        store.close()


def _wait_for(port: int, condition, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["projection"]
            if condition(last):
                return last
        except (httpx.HTTPError, KeyError):
            pass
        time.sleep(0.03)
    raise AssertionError(f"the analytics worker never got there: {last}")


# -- the store going away while the gateway serves -----------------------------------------


HOLD = """
import sys, clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def _chat(url: str, key: str, n: int) -> list[str]:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    ids = []
    for i in range(n):
        raw = client.chat.completions.with_raw_response.create(
            model=("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "google/gemini-1.5-flash")[i % 3],
            messages=[{"role": "user", "content": f"hello {i}"}])
        ids.append(raw.headers["x-request-id"])
    return ids


def _assert_matches_ledger(gw, request_ids: list[str]) -> None:
    expected = ledger_totals_by_request(gw.gateway.settings.database_url, gw.gateway.settings.data_dir, request_ids)
    rows = {r["tenant"]: r for r in gw.admin("totals", since="2000-01-01T00:00:00Z").json()["data"]}
    for tenant, want in expected.items():
        assert Decimal(rows[tenant]["cost"]) == want["cost"]
        assert rows[tenant]["requests"] == want["requests"]
        assert rows[tenant]["output_tokens"] == want["output_tokens"]
    raw_rows = gw.admin("breakdown", by="tenant", source="raw", since="2000-01-01T00:00:00Z").json()["data"]
    assert sum(r["requests"] for r in raw_rows) == len(request_ids)  # no duplicate rows, even without FINAL


def test_gateway_serves_while_the_store_is_down_and_catches_up_when_it_returns(tmp_path, simulator, analytics_env):
    data = tmp_path / "data"
    keys = seed_tenants(None, data, ("acme", "globex"))
    (data / "analytics").mkdir(parents=True, exist_ok=True)
    # Another process holds the chDB data path: for this gateway the store is down.
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str((data / "analytics").resolve())],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert holder.stdout.readline().strip() == b"held"
        gw = start_analytics_gateway(tmp_path, simulator.url, None, keys=keys)
        try:
            ids = _chat(gw.url, keys["acme"][0], 5) + _chat(gw.url, keys["globex"][0], 4)  # chat is unaffected
            down = gw.admin("totals")
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "analytics_unavailable"
            assert down.headers["retry-after"] == "1"
            assert gw.status()["state"] == "store_unavailable"
            holder.stdin.close()  # the store comes back
            holder.wait(15)
            gw.wait_caught_up()
            _assert_matches_ledger(gw, ids)
        finally:
            gw.gateway.stop()
    finally:
        if holder.poll() is None:
            holder.kill()


def test_stopping_the_store_and_starting_it_again(tmp_path, simulator, analytics_env, monkeypatch):
    """The gateway owning the store stops (and the store with it); another gateway
    without analytics keeps serving on the same ledger; the owner starts again and
    the projection catches up from where it was."""
    data = tmp_path / "data"
    keys = seed_tenants(None, data, ("acme", "globex"))
    owner = start_analytics_gateway(tmp_path, simulator.url, None, keys=keys)
    ids = _chat(owner.url, keys["acme"][0], 4)
    owner.wait_caught_up()
    position = owner.status()["position"]
    owner.gateway.stop()

    monkeypatch.setenv("TWOAPI_ANALYTICS", "off")
    other = start_analytics_gateway(tmp_path, simulator.url, None, keys=keys)
    try:
        ids += _chat(other.url, keys["globex"][0], 5) + _chat(other.url, keys["acme"][1], 2)
        assert other.admin("totals").status_code == 503
    finally:
        other.gateway.stop()

    monkeypatch.setenv("TWOAPI_ANALYTICS", "owner")
    again = start_analytics_gateway(tmp_path, simulator.url, None, keys=keys)
    try:
        status = again.wait_caught_up()
        assert status["position"] > position
        _assert_matches_ledger(again, ids)
    finally:
        again.gateway.stop()


def test_settings_reach_the_projection(tmp_path):
    config = AnalyticsConfig.from_env(tmp_path, {"TWOAPI_ANALYTICS_BATCH": "123", "CLICKHOUSE_URL": "http://h:8123/db"})
    assert (config.batch_size, config.engine, config.role) == (123, "clickhouse", "off")  # off unless told
    assert AnalyticsConfig.from_env(tmp_path, {"TWOAPI_ANALYTICS_URL": "http://w:1"}).role == "remote"
    assert replace(config, clickhouse_url=None).chdb_path == tmp_path / "analytics"
    with pytest.raises(ValueError):
        AnalyticsConfig.from_env(tmp_path, {"TWOAPI_ANALYTICS": "sometimes"})
