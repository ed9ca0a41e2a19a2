"""Re-pricing: pick a price-book version and see old and new cost side by side.

The new cost is computed by the re-pricing engine (replaying UsageMetered events
through another price book), which is another piece of work that has not landed:
until it does, this page says so and shows what it can: the published versions and
the cost as charged."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # streamlit runs pages as scripts
    sys.path.insert(0, ROOT)

import streamlit as st  # noqa: E402

from dashboards import client, ui  # noqa: E402

UNAVAILABLE = ("Re-pricing is unavailable: the re-pricing engine (replaying usage through another price book) "
               "has not landed yet. When it does, this page shows the old and the new cost side by side.")

st.title("Re-pricing")
since = ui.window(default="Last 7 days")
st.warning(UNAVAILABLE, icon=":material/construction:")

try:
    books = client.get("/admin/price-books")
except client.DashboardError as error:
    books = None
    st.info(f"The price books could not be listed ({error}).")
versions = [book["version"] for book in (books or {}).get("data", [])]
if books is not None:
    base = books.get("base", {}).get("version")
    choices = versions or [base]
    st.selectbox("Price-book version to re-price with", choices, key="version", disabled=not versions,
                 help="published versions (POST /admin/price-books); the catalog's list prices are the base")
    st.caption(f"In force now: {books.get('in_force')} · base: {base}")

charged = client.frame(ui.fetch("cost by model", lambda: client.query("breakdown", since=since, by="model")))
st.subheader("Cost by model")
if not ui.empty(charged, "usage"):
    table = charged[["group", "requests", "input_tokens", "output_tokens", "cached_tokens", "cost"]].rename(
        columns={"group": "model", "cost": "charged (USD)"})
    st.altair_chart(ui.bar_chart(ui.as_float(charged, "cost"), "cost", "group",
                                 "Charged, by model (the \"old\" side of the comparison)", "USD"), width="stretch")
    table["charged (USD)"] = table["charged (USD)"].map(client.exact)
    table["re-priced (USD)"] = "unavailable"
    st.dataframe(table, hide_index=True, width="stretch")
