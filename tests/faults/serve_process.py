"""`twoapi serve` in a process of its own, as people run it: its resident memory can
be read, and everything it logs lands in a file the test can search."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import free_port, wait_until_healthy

TWOAPI = str(Path(sys.executable).with_name("twoapi"))


def clean_env(**settings: str | None) -> dict[str, str]:
    """This process's environment without any provider, store or 2api setting, plus
    `settings` (None values left out)."""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_BASE_URL")) and not k.startswith("TWOAPI_")
           and k not in ("DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL")}
    env.update({k: v for k, v in settings.items() if v is not None})
    return env


def simulated(simulator_url: str) -> dict[str, str]:
    """Provider settings pointing every provider at the simulator."""
    return {"OPENAI_API_KEY": "sim-key", "OPENAI_BASE_URL": simulator_url + "/v1",
            "ANTHROPIC_API_KEY": "sim-key", "ANTHROPIC_BASE_URL": simulator_url,
            "GOOGLE_API_KEY": "sim-key", "GOOGLE_BASE_URL": simulator_url}


class ServeProcess:
    def __init__(self, data_dir: Path, log_path: Path, **settings: str | None) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = log_path
        env = clean_env(PORT=str(self.port), TWOAPI_DATA_DIR=str(data_dir), TWOAPI_ANALYTICS="off",
                        PYTHONUNBUFFERED="1", **settings)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen([TWOAPI, "serve"], env=env, stdout=self._log, stderr=self._log)
        try:
            wait_until_healthy(self.url, timeout=30)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"twoapi serve did not start: {self.output()[-2000:]}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/v1"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss(self) -> int:
        """Resident memory of the serving process, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for the gateway process")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
