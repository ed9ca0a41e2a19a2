"""The environment variables the code reads, found by reading the code.

A read is `os.environ.get("X")`, `os.environ["X"]`, `os.getenv("X")`, `env.get("X")`
or `env["X"]` (the settings classes take the environment as `env`), not followed by
`=` (that is a write, for a child process or a library), plus the provider table of
gateway/config.py, whose names are read through variables.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config import PROVIDER_ENV

REPO = Path(__file__).resolve().parents[2]
# The service's code (what the image runs), the client SDK, and the benchmarks.
SERVICE_DIRS = ("gateway", "adapters", "ledger", "analytics", "dashboards", "simulator")
CLIENT_DIRS = ("sdk/python/src",)
TOOL_DIRS = ("bench",)

_READ = re.compile(
    r"""(?:\benviron\.get|\bgetenv|\benv\.get)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|(?:\benviron|\benv)\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\](?!\s*=[^=])"""
)


def _python_files(dirs: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for name in dirs:
        root = REPO / name
        # Hidden folders are not ours to scan (.venv, bench/.trees: old commits checked out for side-by-side runs).
        files += [p for p in root.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(root).parts)
                  and "site-packages" not in p.parts]
    return files


def reads_in(dirs: tuple[str, ...]) -> dict[str, set[str]]:
    """variable -> the files (relative) that read it."""
    found: dict[str, set[str]] = {}
    for path in _python_files(dirs):
        for match in _READ.finditer(path.read_text(encoding="utf-8")):
            name = match.group(1) or match.group(2)
            found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def service_reads() -> set[str]:
    names = set(reads_in(SERVICE_DIRS))
    for key_var, url_var, _ in PROVIDER_ENV.values():
        names |= {key_var, url_var}
    return names


def all_reads() -> set[str]:
    return service_reads() | set(reads_in(CLIENT_DIRS)) | set(reads_in(TOOL_DIRS))
