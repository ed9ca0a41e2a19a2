"""Processes under measurement: start (pinned with taskset), wait for health, read
CPU time and RSS from /proc, stop by pid.

CPU placement on this 2-core machine (reported in every result): the stack under test
(gateway, bare pass-through or LiteLLM) gets `SUT_CPUS`, the load generator and the
simulator share `INFRA_CPUS`. PostgreSQL and Redis are system services and are not
pinned; their CPU is not counted in "gateway CPU per request".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def default_placement() -> dict[str, str | None]:
    """CPU lists for taskset: the stack under test on the last CPU, the rest on the others.

    With one CPU, nothing is pinned (everything shares it, and the report says so).
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return {"sut": None, "infra": None}
    return {"sut": str(cpus[-1]), "infra": ",".join(str(c) for c in cpus[:-1])}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


@dataclass
class Proc:
    """A process the harness started, in its own process group."""

    name: str
    cmd: list[str]
    cpus: str | None
    log_path: Path
    popen: subprocess.Popen
    started_at: float = field(default_factory=time.monotonic)
    ready_s: float | None = None  # start-up to first healthy answer

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """This process and its descendants (LiteLLM, multi-worker servers)."""
        return [self.pid, *descendants(self.pid)]

    def cpu_seconds(self) -> float:
        """User + system CPU of the process tree (threads included), in seconds."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def rss_mb(self) -> float:
        return sum(rss_bytes(pid) for pid in self.pids()) / 1e6

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        else:
            # The leader is gone; make sure its group is too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)


def start(
    name: str,
    cmd: list[str],
    *,
    cpus: str | None,
    log_dir: Path,
    env: dict[str, str | None] | None = None,
    cwd: str | Path | None = None,
) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full = pinned(cmd, cpus)
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environ(env),
            cwd=cwd,
            start_new_session=True,  # own process group: stopped as one, never by name
        )
    return Proc(name=name, cmd=full, cpus=cpus, log_path=log_path, popen=popen)


def _environ(overrides: dict[str, str | None] | None) -> dict[str, str]:
    """os.environ with `overrides` applied; a None value removes the variable."""
    merged = dict(os.environ)
    for name, value in (overrides or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def wait_http(proc: Proc, url: str, timeout: float = 30.0, headers: dict[str, str] | None = None,
              data: bytes | None = None, ok: tuple[int, ...] = (200,)) -> float:
    """Poll `url` until it answers with an `ok` status; return seconds since start."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        request = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status in ok:
                    proc.ready_s = time.monotonic() - proc.started_at
                    return proc.ready_s
                last = resp.status
        except urllib.error.HTTPError as error:
            last = error.code
            if error.code in ok:
                proc.ready_s = time.monotonic() - proc.started_at
                return proc.ready_s
        except (urllib.error.URLError, OSError) as error:
            last = error
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready at {url} after {timeout}s (last: {last}):\n{proc.log_tail()}")


# ------------------------------------------------------------------------------ /proc


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the parenthesised command: utime is 14th, stime 15th overall.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(statm[1]) * PAGE_SIZE


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        for task in _tasks(parent):
            try:
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                stack.append(int(child))
    return found


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, /proc/stat), for telling
    how much of a sample's time other tenants took."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / CLK_TCK


def machine_note() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1e6
    load = os.getloadavg()
    return {
        "cpus": cpu_count(),
        "cpu_model": model,
        "mem_gb": round(mem_gb, 1),
        "loadavg_at_start": [round(x, 2) for x in load],
        "kernel": os.uname().release,
    }
