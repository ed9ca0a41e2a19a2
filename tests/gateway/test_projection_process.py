"""`twoapi serve` with PostgreSQL runs the tenancy projection in a process beside the
gateway (gateway/projection_process.py): the projection follows what the gateway
serves, and the process goes when `serve` goes, even by SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import openai
import pytest

from gateway.projection_process import NICENESS, wanted
from tests.gateway.test_processes import DEMO_KEY, Process, base_env
from tests.support import free_port, wait_until_healthy


def test_where_the_projection_runs(monkeypatch):
    monkeypatch.delenv("TWOAPI_PROJECTIONS", raising=False)
    assert wanted("postgresql://db/ledger", workers=1)
    assert wanted(None, workers=2)
    assert not wanted(None, workers=1)  # embedded SQLite, one process: a thread, as before
    monkeypatch.setenv("TWOAPI_PROJECTIONS", "thread")
    assert not wanted("postgresql://db/ledger", workers=4)  # the operator's choice stands


def test_the_process_is_restarted_when_it_dies_and_not_when_it_was_stopped(monkeypatch, tmp_path):
    from gateway import projection_process

    monkeypatch.setattr(projection_process, "RESTART_PAUSE_S", 0.05)
    runs = tmp_path / "runs"
    dying = projection_process.ProjectionChild(
        [sys.executable, "-c", f"open({str(runs)!r}, 'a').write('x'); raise SystemExit(3)"])
    dying.start()
    wait_for(lambda: runs.exists() and len(runs.read_text()) >= 3, timeout=20)
    dying.stop()
    assert dying.restarts >= 2
    clean = projection_process.ProjectionChild([sys.executable, "-c", "pass"])
    clean.start()
    clean._watch.join(20)
    assert clean.restarts == 0 and not clean._watch.is_alive()
    clean.stop()


def children_of(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry), cmdline))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


@pytest.mark.parametrize("store", ["postgres"])
def test_serve_with_postgres_projects_in_a_process_beside_it_that_dies_with_it(tmp_path, store, request):
    database_url = request.getfixturevalue("postgres_url")
    port = free_port()
    env = {**base_env(tmp_path / "data", database_url), "PORT": str(port)}
    env.pop("TWOAPI_PROJECTIONS", None)
    gateway = Process(["serve", "--simulate"], env, tmp_path, "gateway")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, timeout=60)
        beside = [pid for pid, cmd in children_of(gateway.proc.pid) if "gateway.projection_process" in cmd]
        assert len(beside) == 1, children_of(gateway.proc.pid)
        # Background work yields the CPU to serving: the projection runs niced.
        wait_for(lambda: os.getpriority(os.PRIO_PROCESS, beside[0]) == os.getpriority(
            os.PRIO_PROCESS, gateway.proc.pid) + NICENESS, timeout=30)
        client = openai.OpenAI(base_url=url + "/v1", api_key=DEMO_KEY, max_retries=0, timeout=30)
        for _ in range(3):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

        from ledger.application import Ledger
        from ledger.projections.runner import close_view, open_view, status

        ledger = Ledger.open(database_url, tmp_path / "reader")
        view = open_view(database_url, tmp_path / "reader")
        try:
            # Only the process beside the gateway projects (the gateway runs none).
            wait_for(lambda: status(ledger, view).pending == 0, timeout=30)
            assert status(ledger, view).position > 0
        finally:
            close_view(view)
            ledger.close()

        gateway.proc.send_signal(signal.SIGKILL)
        gateway.proc.wait(10)
        wait_for(lambda: not alive(beside[0]), timeout=15)
    finally:
        gateway.stop()
