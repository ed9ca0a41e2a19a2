"""docs/operations.md documents every environment variable the code reads, and
names no service variable the code does not read."""

from __future__ import annotations

import re

from tests.deploy.envvars import REPO, all_reads, service_reads

DOC = (REPO / "docs" / "operations.md").read_text()


def documented(section: str) -> set[str]:
    body = DOC.split(f"### {section}\n", 1)[1].split("\n#", 1)[0]
    names: set[str] = set()
    for row in re.findall(r"^\| ([^|]+) \|", body, re.M):
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]*\*?)`", row))
    return names


def all_documented() -> set[str]:
    return documented("Service") | documented("Clients (the twoapi SDKs)") | documented("Benchmarks and tests")


def test_every_variable_the_code_reads_is_documented():
    missing = sorted(all_reads() - all_documented())
    assert not missing, f"read by the code but not in docs/operations.md: {missing}"


def test_every_documented_service_variable_is_read_by_the_code():
    stale = sorted(name for name in documented("Service") - service_reads() if not name.endswith("*"))
    assert not stale, f"in docs/operations.md but read by no code: {stale}"


def test_the_scan_finds_the_known_reads():
    reads = service_reads()
    assert {"DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL", "PORT", "TWOAPI_DATA_DIR", "OPENAI_BASE_URL"} <= reads
    assert "APPLICATION_RECORDER_TOPIC" not in reads  # written for a library, not read
