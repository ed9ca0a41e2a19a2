"""Finance audit: one tenant's ledger lines with filters (time, key, model, event type),
each linked to its request's events; a reconciliation panel (ledger vs projection vs
analytics); CSV download."""

import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # streamlit runs pages as scripts
    sys.path.insert(0, ROOT)

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from dashboards import client, ui  # noqa: E402

LINES = 500
ANY = "(any)"

st.title("Finance audit")
since = ui.window(default="Last 24 hours")
tenants = client.frame(ui.fetch("tenants", lambda: client.query("tenants")))
if ui.empty(tenants, "tenants"):
    st.stop()
names = tenants["tenant"].tolist()
preset = st.query_params.get("tenant")
tenant = st.sidebar.selectbox("Tenant", names, index=names.index(preset) if preset in names else 0, key="tenant")

facets = client.frame(ui.fetch("filters", lambda: client.query("facets", tenant=tenant, since=since)))
keys = client.frame(ui.fetch("keys", lambda: client.query("keys", tenant=tenant)))
labels = {row.key_id: f"{row.label or 'key'} ({row.prefix}…)" for row in keys.itertuples()} if not keys.empty else {}


def options(facet: str) -> list[str]:
    return [ANY, *facets.loc[facets["facet"] == facet, "value"].tolist()] if not facets.empty else [ANY]


f1, f2, f3 = st.columns(3)
key_id = f1.selectbox("Key", options("key_id"), format_func=lambda k: labels.get(k, k), key="key")
model = f2.selectbox("Model", options("model"), key="model")
event = f3.selectbox("Event type", options("event"), key="event")
filters = {"tenant": tenant, "since": since, "key_id": None if key_id == ANY else key_id,
           "model": None if model == ANY else model, "event": None if event == ANY else event}

answer = ui.fetch("ledger lines", lambda: client.query("ledger", limit=LINES, **filters))
lines = client.frame(answer)
st.subheader(f"Ledger of {tenant}")
charges = client.frame(ui.fetch("charges", lambda: client.query(
    "usage", tenant=tenant, since=since, by="model", bucket=ui.BUCKETS[since],
    key_id=filters["key_id"], model=filters["model"])))
if not charges.empty:
    picture = ui.as_float(charges, "cost").rename(columns={"group": "model"})
    st.altair_chart(ui.time_chart(picture, "cost", "model", "Usage charged per period, by model", "USD",
                                  mark="bar", stack=True, fmt=",.9f"), width="stretch")
if not ui.empty(lines, "ledger lines"):
    metered = lines.loc[lines["event"] == "UsageMetered", "amount"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Lines shown", f"{len(lines):,}", help=f"the latest {LINES}; the CSV has up to 10,000")
    c2.metric("Usage charged (shown)", client.money(sum(metered.tolist(), Decimal(0)), 9))
    c3.metric("Requests (shown)", f"{lines['request_id'].replace('', pd.NA).nunique():,}")
    table = lines.assign(
        key=lines["key_id"].map(lambda k: labels.get(k, k[:8])),
        amount=lines["amount"].map(client.exact),
        request=lines["request_id"].map(
            lambda r: f"/finance?{urlencode({'tenant': tenant, 'request_id': r})}" if r else None),
    )[["time", "event", "request", "key", "model", "amount", "input_tokens", "output_tokens", "cached_tokens"]]
    st.dataframe(table, hide_index=True, width="stretch", key="lines",
                 column_config={
                     "request": st.column_config.LinkColumn("request", display_text=r"request_id=(req_[0-9a-f]+)",
                                                            help="open this request's events"),
                     "amount": st.column_config.TextColumn("amount (USD, exact)"),
                     "time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss.SSS"),
                 })
    st.download_button("Download CSV", data=client.csv_text("ledger", limit=10_000, **{
        k: v for k, v in filters.items() if v is not None}), file_name=f"ledger-{tenant}.csv", mime="text/csv",
        key="csv")

st.subheader("A request's events")
request_ids = [r for r in dict.fromkeys(lines["request_id"].tolist()) if r] if not lines.empty else []
preset_request = st.query_params.get("request_id")
if preset_request and preset_request not in request_ids:
    request_ids.insert(0, preset_request)
if not request_ids:
    st.info("No request in the lines above.")
else:
    chosen = st.selectbox("Request", request_ids, index=0, key="request")
    events = client.frame(ui.fetch("the request's events", lambda: client.query("request", request_id=chosen)))
    if events.empty:
        st.warning(f"No events for {chosen} in this tenant's ledger.")
    else:
        st.dataframe(events.assign(amount=events["amount"].map(client.exact)), hide_index=True, width="stretch",
                     key="request_events")

st.subheader("Reconciliation")
st.caption("The tenant's totals recomputed from the ledger's own events, beside the analytics store's, at the"
           " ledger position the analytics projection has reached; and the tenancy projection's balance.")
if st.button("Reconcile now", key="reconcile"):
    report = ui.fetch("the reconciliation", lambda: client.query("reconciliation", tenant=tenant))
    projection = report.get("projection") or {}
    rows = []
    for name, line in report["lines"].items():
        projected = projection.get("balance") if name == "balance" and projection.get("available") else None
        rows.append({"total": name, "ledger": str(line["ledger"]), "projection": "" if projected is None
                     else client.exact(projected), "analytics": str(line["analytics"] if line["analytics"]
                                                                      is not None else 0),
                     "match": bool(line["match"])})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="reconciliation",
                 column_config={"match": st.column_config.CheckboxColumn("match")})
    if report["match"]:
        st.success(f"Ledger and analytics agree to the nano-dollar (ledger position {report['position']:,}).")
    else:
        st.error("Ledger and analytics disagree: see the lines above.")
    if not projection.get("available"):
        st.caption(f"Tenancy projection: {projection.get('reason', 'not available')}.")
