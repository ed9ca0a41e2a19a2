"""Analytics settings, read from the environment.

Which store (chDB in the data dir, or a ClickHouse server) and which role this
process plays are decided here, once:

* `owner`: this process opens the store and runs the projection. With chDB only one
  process may hold a data path, so this is one process per store: the analytics
  worker (`twoapi analytics run`), which `twoapi serve` starts beside the gateway.
* `remote`: forward queries to the analytics worker at `TWOAPI_ANALYTICS_URL`; what
  `twoapi serve` gives its gateway process(es) with the embedded store, so serving
  processes never load chDB (~400 MB, and a projection thread competing for the GIL).
* `query`: open the store for queries only: gateway processes with a ClickHouse
  server (`CLICKHOUSE_URL`), where any process may query and one projects.
* `off`: no analytics in this process. The default when nothing is set, e.g. an
  app built with `create_app` in a test or served by a bare `hypercorn
  gateway.asgi:app`: set `TWOAPI_ANALYTICS=owner` there to own the store in-process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROLES = ("owner", "query", "remote", "off")


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    role: str = "owner"  # from_env defaults to "off": see the module doc
    data_dir: Path = Path(".twoapi")
    clickhouse_url: str | None = None  # http(s)://user:pass@host:8123/db; chDB when None
    remote_url: str | None = None  # the analytics worker, for role "remote"
    batch_size: int = 5000  # ledger notifications per ClickHouse batch
    poll_s: float = 1.0  # how often the projection ships what arrived (its lag when traffic trickles)
    retry_max_s: float = 5.0  # the longest wait between reconnection attempts

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "analytics"

    @property
    def engine(self) -> str:
        return "clickhouse" if self.clickhouse_url else "chdb"

    @property
    def projects(self) -> bool:
        return self.role == "owner"

    @classmethod
    def from_env(cls, data_dir: Path, env: Mapping[str, str] = os.environ) -> AnalyticsConfig:
        remote_url = env.get("TWOAPI_ANALYTICS_URL") or None
        role = (env.get("TWOAPI_ANALYTICS") or ("remote" if remote_url else "off")).lower()
        if role not in ROLES:
            raise ValueError(f"TWOAPI_ANALYTICS must be one of {', '.join(ROLES)}, not {role!r}")
        if role == "remote" and not remote_url:
            raise ValueError("TWOAPI_ANALYTICS=remote needs TWOAPI_ANALYTICS_URL")
        return cls(
            role=role,
            data_dir=data_dir,
            clickhouse_url=env.get("CLICKHOUSE_URL") or None,
            remote_url=remote_url,
            batch_size=int(env.get("TWOAPI_ANALYTICS_BATCH") or 5000),
            poll_s=float(env.get("TWOAPI_ANALYTICS_POLL_S") or 1.0),
            retry_max_s=float(env.get("TWOAPI_ANALYTICS_RETRY_MAX_S") or 5.0),
        )
