"""`ledger verify` compares the analytics store too, when a gateway serves it: each
tenant's cost in ClickHouse against the events, after a re-pricing run as well."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openai

from gateway.price_list import base_price_book
from ledger.application import Ledger
from ledger.audit.verify import Report, Scope, _Replay, compare_analytics
from ledger.price_books import book_of
from ledger.repricing import apply, plan
from tests.analytics.conftest import ADMIN_TOKEN, analytics_env, sqlite_analytics_gateway  # noqa: F401

DOUBLE = {"openai/gpt-4o-mini": {"input": "0.30", "output": "1.20"}}


def verify_cli(gateway) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TWOAPI_DATA_DIR": str(gateway.settings.data_dir), "TWOAPI_ADMIN_TOKEN": ADMIN_TOKEN}
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "gateway.cli", "ledger", "verify", "--json", "--gateway",
                           gateway.url], env=env, capture_output=True, text=True, timeout=120)


def test_verify_compares_each_tenants_cost_with_the_analytics(sqlite_analytics_gateway):  # noqa: F811
    running = sqlite_analytics_gateway
    for tenant, keys in running.keys.items():
        sdk = openai.OpenAI(base_url=running.gateway.api_url, api_key=keys[0], max_retries=0)
        for model in ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"):
            sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hi {tenant}"}])
    ledger = Ledger.open(None, running.gateway.settings.data_dir)
    try:
        now = datetime.now(UTC)
        apply(ledger, plan(ledger, book_of("double", DOUBLE), now - timedelta(days=1), now + timedelta(days=1),
                           prices=DOUBLE))
    finally:
        ledger.close()
    running.wait_caught_up()
    done = verify_cli(running.gateway)
    report = json.loads(done.stdout)
    assert done.returncode == 0, report["findings"]
    assert "analytics" in report["checked"] and report["analytics"].startswith("compared")


def test_a_tenant_whose_analytics_cost_differs_is_named():
    report = Report()
    replay = _Replay(base_price_book(), report, None, set())
    replay.tenant_costs.update({"acme": Decimal("0.000100000"), "beta": Decimal("0.5"), "gamma": Decimal(1)})
    replay.tenant_tokens.update({"acme": [10, 20, 0], "beta": [5, 5, 5], "gamma": [1, 1, 0]})
    analytics = {"acme": (Decimal("0.000100001"), 10, 20, 0), "beta": (Decimal("0.5"), 5, 5, 5),
                 "gamma": (Decimal(1), 1, 2, 0)}
    compare_analytics(report, replay, analytics, Scope())
    assert [(f.check, f.subject) for f in report.findings] == [("analytics", "tenant acme"),
                                                               ("analytics", "tenant gamma")]
    assert "events say (cost, input, output, cached tokens) (0.000100000, 10, 20, 0), analytics says " \
           "(0.000100001, 10, 20, 0)" in report.findings[0].detail
