"""Tenant: spend over time, by model and by key; balance and budget burn-down; volume
and error rate."""

import sys
from decimal import Decimal
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # streamlit runs pages as scripts
    sys.path.insert(0, ROOT)

import altair as alt  # noqa: E402
import streamlit as st  # noqa: E402

from dashboards import client, ui  # noqa: E402

st.title("Tenant")
since = ui.window()
tenants = client.frame(ui.fetch("tenants", lambda: client.query("tenants")))
if ui.empty(tenants, "tenants"):
    st.stop()
names = tenants["tenant"].tolist()
preset = st.query_params.get("tenant")
tenant = st.sidebar.selectbox("Tenant", names, index=names.index(preset) if preset in names else 0, key="tenant")

budget = ui.fetch("the budget", lambda: client.query("budget", tenant=tenant, since=since))
summary = budget["summary"]
usage = client.frame(ui.fetch("usage", lambda: client.query("usage", tenant=tenant, since=since, by="model")))
by_key = client.frame(ui.fetch("spend by key", lambda: client.query("breakdown", tenant=tenant, since=since,
                                                                       by="key")))
keys = client.frame(ui.fetch("keys", lambda: client.query("keys", tenant=tenant)))

spend = sum(usage["cost"], Decimal(0)) if not usage.empty else Decimal(0)
requests = int(usage["requests"].sum()) if not usage.empty else 0
errors = int(usage["errors"].sum()) if not usage.empty else 0
cap = summary.get("monthly_cap")

k1, k2, k3, k4, k5 = st.columns(5)
k1.metric("Spend (window)", client.money(spend, 6))
k2.metric("Balance", client.money(summary["balance"], 2),
          help="credits + adjustments - all spend, from the ledger's events")
k3.metric("This month", client.money(summary["month_spend"], 2),
          delta=f"of {client.money(cap, 2)} cap" if cap else "no monthly cap", delta_color="off")
k4.metric("Requests (window)", f"{requests:,}")
k5.metric("Error rate (window)", client.percent(errors / requests if requests else 0))

if not ui.empty(usage, "requests for this tenant"):
    chart = ui.as_float(usage, "cost").rename(columns={"group": "model"})
    st.altair_chart(ui.time_chart(chart, "cost", "model", "Spend over time, by model", "USD", mark="bar",
                                  stack=True), width="stretch")
    left, right = st.columns(2)
    per_model = chart.groupby("model", as_index=False)["cost"].sum()
    left.altair_chart(ui.bar_chart(per_model, "cost", "model", "Spend by model", "USD"), width="stretch")
    labels = {row.key_id: f"{row.label or 'key'} ({row.prefix}…)" for row in keys.itertuples()}
    key_chart = ui.as_float(by_key, "cost").assign(key_label=by_key["group"].map(lambda k: labels.get(k, k[:8])))
    right.altair_chart(ui.bar_chart(key_chart, "cost", "key_label", "Spend by key", "USD"), width="stretch")

    volume = chart.groupby("bucket", as_index=False)[["requests", "errors"]].sum()
    volume["error_rate"] = volume["errors"] / volume["requests"].clip(lower=1)
    left, right = st.columns(2)
    left.altair_chart(ui.time_chart(volume, "requests", None, "Requests", "requests", mark="bar", fmt=","),
                      width="stretch")
    right.altair_chart(ui.time_chart(volume, "error_rate", None, "Error rate", "share of requests", fmt=".1%")
                       .encode(y=alt.Y("error_rate:Q", axis=alt.Axis(format="%"), title=None)),
                       width="stretch")

st.subheader("Balance burn-down")
burn = client.frame(budget)
if not ui.empty(burn, "spend"):
    line = ui.as_float(burn, "balance", "spend")
    chart = ui.time_chart(line, "balance", None, "Balance after each period's spend", "USD", fmt=",.6f")
    # Not from zero: a balance of $250 spending cents a minute is a slope, not a flat line.
    st.altair_chart(chart.encode(y=alt.Y("balance:Q", scale=alt.Scale(zero=False), title="USD")), width="stretch")
st.caption(f"Credits {client.money(summary['credits'], 2)} · adjustments {client.money(summary['adjustments'], 2)}"
           f" · all-time spend {client.money(summary['spend'], 6)}")

st.subheader("Keys")
if not ui.empty(keys, "keys"):
    table = keys[["label", "prefix", "key_id", "revoked", "requests", "cost"]].copy()
    table["cost"] = table["cost"].map(client.exact)
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"cost": st.column_config.TextColumn("cost (USD, exact)"),
                                "revoked": st.column_config.CheckboxColumn("revoked")})
