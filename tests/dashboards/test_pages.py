"""Each dashboard page, run by Streamlit's AppTest against the seeded gateway, shows
the values the ledger holds: not just "no exception"."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pyarrow as pa
from streamlit.testing.v1 import AppTest

from dashboards.client import money
from gateway.price_list import base_price_book
from tests.analytics.conftest import ADMIN_TOKEN

MINI = "openai/gpt-4o-mini"
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


def test_repricing_page_shows_old_new_and_delta_from_the_engine(seeded):
    # A version doubling one model's prices, in force only in 2100: nothing is priced by it.
    mini = base_price_book().prices[MINI]
    doubled = {"input": str(2 * mini.input), "output": str(2 * mini.output), "cached_input": str(2 * mini.cached_input)}
    published = httpx.post(f"{seeded.gw.url}/admin/price-books", headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                           json={"version": "double-mini", "effective_at": "2100-01-01T00:00:00Z",
                                 "prices": {MINI: doubled}}, timeout=30)
    assert published.status_code == 201, published.text
    truth = seeded.usage
    assert any(model == MINI for _, model in truth)
    mini_cost = sum(line["cost"] for (_, model), line in truth.items() if model == MINI)
    total = sum(line["cost"] for line in truth.values())

    at = page("repricing")  # the latest published version by default
    assert not at.warning
    assert at.selectbox(key="version").value == "double-mini"
    shown = metrics(at)
    assert shown["Cost as it stands"] == money(total, 9)
    assert shown["Re-priced"] == money(total + mini_cost, 9)
    assert shown["Delta"] == money(mini_cost, 9)
    assert shown["Usage events"] == f"{sum(line['events'] for line in truth.values()):,}"
    assert shown["Unpriced events"] == f"{sum(line['events'] for (_, m), line in truth.items() if m != MINI):,}"
    lines = at.dataframe[0].value
    assert len(lines) == len(truth)
    for row in lines.to_dict("records"):
        old, new, delta = (Decimal(row[c]) for c in ("as it stands (USD)", "re-priced (USD)", "delta (USD)"))
        assert old == truth[(row["tenant"], row["model"])]["cost"]  # exact strings, to the nano-dollar
        assert row["events"] == truth[(row["tenant"], row["model"])]["events"]
        assert (delta, new) == ((old, 2 * old) if row["model"] == MINI else (0, old)), row
    per_tenant = at.dataframe[1].value
    assert {r["tenant"]: Decimal(r["as it stands (USD)"]) for r in per_tenant.to_dict("records")} == {
        t: v["cost"] for t, v in seeded.totals.items()}
    rows = chart_rows(at)  # old and new side by side; the deltas where the cost changes
    assert rows == [2 * len(truth), sum(1 for _, model in truth if model == MINI)], rows
    assert any("twoapi reprice --price-book double-mini" in c.value and "--apply" in c.value for c in at.caption)

    # The book that charged: zero delta everywhere.
    at.selectbox(key="version").select("base").run()
    assert not at.exception and metrics(at)["Delta"] == money(0, 9)
    assert {Decimal(d) for d in at.dataframe[0].value["delta (USD)"]} == {Decimal(0)}
    assert len(chart_rows(at)) == 1 and any("changes no cost" in s.value for s in at.success)

    # A price table of one's own, starting from the version's prices: the same numbers.
    at.selectbox(key="version").select("double-mini").run()
    at.radio(key="mode").set_value("Edited price table").run()
    assert not at.exception and not at.error
    assert metrics(at)["Delta"] == money(mini_cost, 9)
    assert at.subheader[0].value.startswith("file-")  # a table's version is named by its content
    assert at.get("download_button")

    # One tenant.
    at.radio(key="mode").set_value("Published version").run()
    at.sidebar.selectbox(key="tenant").select("acme").run()
    assert set(at.dataframe[0].value["tenant"]) == {"acme"}
    assert metrics(at)["Cost as it stands"] == money(seeded.totals["acme"]["cost"], 9)


def test_pages_say_so_when_there_is_nothing_to_show(seeded, monkeypatch):
    at = page("tenant", tenant="acme")
    at.sidebar.selectbox(key="window").select("Last 15 minutes").run()
    assert not at.exception
    monkeypatch.setenv("TWOAPI_GATEWAY_URL", "http://127.0.0.1:9")  # nothing listens there
    down = AppTest.from_file(str(VIEWS / "providers.py"), default_timeout=30)
    down.run()
    assert not down.exception
    assert any("not answering" in e.value for e in down.error)
