"""Each dashboard page, run by Streamlit's AppTest against the seeded gateway, shows
the values the ledger holds: not just "no exception"."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from streamlit.testing.v1 import AppTest

from dashboards.client import money

VIEWS = Path(__file__).resolve().parents[2] / "dashboards" / "views"


def page(name: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_rows(at: AppTest) -> list[int]:
    """Rows of data behind each chart on the page (Altair charts reach the browser as
    a Vega-Lite spec plus Arrow datasets)."""
    counts = []
    for chart in at.get("vega_lite_chart"):
        proto = chart.proto
        rows = 0
        for dataset in getattr(proto, "datasets", []):
            rows += pa.ipc.open_stream(dataset.data.data).read_all().num_rows
        if not rows and proto.data.data:
            rows = pa.ipc.open_stream(proto.data.data).read_all().num_rows
        if not rows:
            spec = json.loads(proto.spec)
            rows = sum(len(v) for v in spec.get("datasets", {}).values())
        counts.append(rows)
    return counts


def test_tenant_page_shows_the_tenants_spend_balance_volume_and_keys(seeded):
    truth = seeded.totals["acme"]
    at = page("tenant", tenant="acme")
    shown = metrics(at)
    assert shown["Spend (window)"] == money(truth["cost"], 6)
    assert shown["Balance"] == money(Decimal("50.00") - truth["cost"], 2)
    assert shown["Requests (window)"] == f"{truth['requests']:,}"
    assert shown["Error rate (window)"] == f"{truth['errors'] / truth['requests'] * 100:.1f}%"
    rows = chart_rows(at)
    assert len(rows) >= 5 and all(rows), rows  # spend over time, by model, by key, volume, errors, burn-down
    keys = at.dataframe[0].value
    assert sorted(keys["label"]) == ["key-0", "key-1"]
    assert sum(Decimal(c) for c in keys["cost"]) == truth["cost"]  # exact strings, to the nano-dollar
    other = page("tenant", tenant="globex")
    assert metrics(other)["Spend (window)"] == money(seeded.totals["globex"]["cost"], 6)


def test_providers_page_shows_every_provider_with_rates_latency_and_throughput(seeded):
    at = page("providers")
    shown = metrics(at)
    assert shown == {provider: f"{count:,} requests" for provider, count in seeded.providers.items()}
    assert set(seeded.providers) == {"openai", "anthropic", "google"}
    rows = chart_rows(at)
    assert len(rows) >= 4 and all(rows), rows  # latency, TTFT, rates, error rate over time, tokens/s
    by_model = at.dataframe[-1].value
    assert {"p50_ms", "p95_ms", "p99_ms", "ttft_p95_ms"} <= set(by_model.columns)
    # Every request reached some provider (failed ones under the provider last tried).
    assert by_model["requests"].sum() == sum(seeded.providers.values())
    assert (by_model["p95_ms"] >= by_model["p50_ms"]).all()


def test_finance_page_lists_the_ledger_links_requests_and_reconciles(seeded):
    truth = seeded.totals["globex"]
    at = page("finance", tenant="globex")
    lines = at.dataframe[0].value
    # Every ledger line of the tenant (fewer than the 500 shown): its requests' events, and
    # its own: created, credits added, two keys issued.
    assert lines["request"].notna().sum() == truth["events"]
    assert sorted(lines[lines["request"].isna()]["event"]) == ["Created", "CreditsAdded", "Issued", "Issued"]
    metered = lines[lines["event"] == "UsageMetered"]
    assert sum(Decimal(a) for a in metered["amount"]) == truth["cost"]
    assert all(link.startswith("/finance?tenant=globex&request_id=req_") for link in lines["request"].dropna())
    assert metrics(at)["Usage charged (shown)"] == money(truth["cost"], 9)
    assert chart_rows(at) and all(chart_rows(at))
    assert at.get("download_button")  # the CSV export

    request_id = lines["request"].dropna().iloc[0].rsplit("=", 1)[1]
    linked = page("finance", tenant="globex", request_id=request_id)
    assert linked.selectbox(key="request").value == request_id
    events = linked.dataframe[1].value
    assert events["event"].iloc[0] == "Received" and list(events["version"]) == list(range(1, len(events) + 1))

    at.selectbox(key="event").select("UsageMetered").run()
    only = at.dataframe[0].value
    assert set(only["event"]) == {"UsageMetered"} and len(only) == len(metered)

    at.button(key="reconcile").click().run()
    assert not at.error
    assert any("agree to the nano-dollar" in s.value for s in at.success)
    table = at.dataframe[-1].value  # the reconciliation panel
    assert table["match"].all()
    cost = table[table["total"] == "cost"].iloc[0]
    assert Decimal(cost["ledger"]) == Decimal(cost["analytics"]) == truth["cost"]


def test_repricing_page_says_it_is_unavailable_and_shows_the_charged_side(seeded):
    at = page("repricing")
    assert any("Re-pricing is unavailable" in w.value for w in at.warning)
    table = at.dataframe[0].value
    assert set(table["re-priced (USD)"]) == {"unavailable"}
    total = sum(t["cost"] for t in seeded.totals.values())
    assert sum(Decimal(c) for c in table["charged (USD)"]) == total
    assert chart_rows(at) and all(chart_rows(at))


def test_pages_say_so_when_there_is_nothing_to_show(seeded, monkeypatch):
    at = page("tenant", tenant="acme")
    at.sidebar.selectbox(key="window").select("Last 15 minutes").run()
    assert not at.exception
    monkeypatch.setenv("TWOAPI_GATEWAY_URL", "http://127.0.0.1:9")  # nothing listens there
    down = AppTest.from_file(str(VIEWS / "providers.py"), default_timeout=30)
    down.run()
    assert not down.exception
    assert any("not answering" in e.value for e in down.error)
