"""The tenancy projection in a process of its own, beside `twoapi serve`.

In a gateway process the projection is a thread that shares the event loop's GIL: at
one request in flight it took a quarter of the process's Python CPU (a transaction on
the view per commit) and, holding the GIL in bursts, delayed the loop's callbacks. With
PostgreSQL, or with several workers, `twoapi serve` runs it here instead: the gateway
processes get `TWOAPI_PROJECTIONS=off` and read the view as before; this process
follows the ledger under the same lease as the thread did (ledger/projections/runner.py),
so at most one projection runs per ledger whatever else runs beside it. `serve`
restarts it if it dies (not when it exits cleanly, as it does on SIGTERM or Ctrl-C),
and it stops when `serve` is gone (even after SIGKILL).

An operator who sets TWOAPI_PROJECTIONS themselves decides: `thread` keeps it in each
gateway process (the lease picks one), `off` leaves it to a `twoapi projections run`
of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import structlog

log = structlog.get_logger("gateway.projection_process")

RESTART_PAUSE_S = 1.0
# Background work yields the CPU to serving. Sharing a core with the gateway at its own
# priority, the projection's bursts (a flush, a seal) stalled requests for 100-300 ms
# (open loop at 200 req/s: the gateway's own p99 93 ms, max 170 ms; at nice 10: 15 ms
# and 27 ms). Paced, a projection that gets less CPU catches up in larger batches; an
# idle core it still gets in full.
NICENESS = 10


def wanted(database_url: str | None, workers: int) -> bool:
    """Whether `twoapi serve` runs the projection beside itself (else: in-process)."""
    if os.environ.get("TWOAPI_PROJECTIONS"):
        return False  # the operator's choice
    return bool(database_url) or workers > 1


@contextlib.contextmanager
def beside_gateway(database_url: str | None, workers: int) -> Iterator[ProjectionChild | None]:
    """For `twoapi serve`: the projection process, started before the gateway (so it is
    following the ledger by the first request) and stopped after it."""
    if not wanted(database_url, workers):
        yield None
        return
    os.environ["TWOAPI_PROJECTIONS"] = "off"  # inherited by the gateway's processes
    child = ProjectionChild([sys.executable, "-m", "gateway.projection_process", "--parent-pid", str(os.getpid())])
    child.start()
    try:
        yield child
    finally:
        child.stop()


class ProjectionChild:
    """The child process, restarted when it dies unexpectedly."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watch = threading.Thread(target=self._supervise, name="projection-process", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self._spawn()
        self._watch.start()

    def _spawn(self) -> None:
        with self._lock:
            if not self._stopping.is_set():
                self._proc = subprocess.Popen(self.command)

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                return
            code = proc.wait()
            if self._stopping.is_set() or code == 0:
                # 0: it was asked to stop (SIGTERM or Ctrl-C reach the whole process
                # group, `serve` included, which is stopping too).
                return
            self.restarts += 1
            log.warning("projection_process_exited", code=code, restarts=self.restarts)
            self._stopping.wait(RESTART_PAUSE_S)
            self._spawn()

    def stop(self, timeout: float = 15.0) -> None:
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    from gateway.config import Settings
    from gateway.observability import configure_logging
    from ledger.projections.runner import ProjectionWorker

    parser = argparse.ArgumentParser(prog="python -m gateway.projection_process", description=__doc__)
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker = ProjectionWorker(settings.database_url, settings.data_dir).start()
    log.info("projection_process_started", pid=os.getpid(), parent=args.parent_pid)
    while not stop.wait(1.0):
        if args.parent_pid and os.getppid() != args.parent_pid:
            break  # `serve` died without stopping us
    worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
