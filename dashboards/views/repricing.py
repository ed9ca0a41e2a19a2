"""Re-pricing: what a window's usage would have cost under another price book.

Pick a published version (or edit a price table, starting from one), a window of UTC
days and optionally a tenant. The gateway's re-pricing engine (POST /admin/reprice,
ledger/repricing.py) replays every metered request of the window through that book;
the page shows, per tenant and model, the cost as it stands, the re-priced cost and
the delta, to the nano-dollar. It is a dry run: nothing is recorded. Recording a run
(corrections and balance adjustments) is an audited action: `twoapi reprice --apply`."""

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # streamlit runs pages as scripts
    sys.path.insert(0, ROOT)

import altair as alt  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from dashboards import client, ui  # noqa: E402

ALL = "(all tenants)"
PUBLISHED, EDITED = "Published version", "Edited price table"
UNITS = ("input", "output", "cached_input", "image")
DEFAULT_DAYS = 30
OLD, NEW = "as it stands", "re-priced"


def price_table(report: dict) -> pd.DataFrame:
    """The editor's rows: each model used in the window with the book's prices of it
    (empty where the book has none), as text: exact, never floats."""
    prices = report.get("prices") or {}
    models = sorted({line["model"] for line in report.get("lines", [])} | set(prices))
    rows = [{"model": model, **{unit: prices.get(model, {}).get(unit, "") for unit in UNITS}} for model in models]
    return pd.DataFrame(rows, columns=["model", *UNITS])


def prices_of(edited: pd.DataFrame) -> dict[str, dict[str, str]]:
    """The edited rows as the API's {model: {unit: price}}: empty cells are no price, and
    a model with no price at all is left out (its usage keeps its cost)."""
    table: dict[str, dict[str, str]] = {}
    for row in edited.to_dict("records"):
        model = str(row.get("model") or "").strip()
        prices = {unit: str(row[unit]).strip() for unit in UNITS
                  if row.get(unit) is not None and not pd.isna(row[unit]) and str(row[unit]).strip()}
        if model and prices:
            table[model] = prices
    return table


st.title("Re-pricing")
st.caption("What the usage of a window would have cost under another price book: the re-pricing engine replays "
           "every metered request through the book you pick. A dry run: nothing is recorded.")

today = datetime.now(UTC).date()
days = st.sidebar.date_input("Window (UTC days, both included)", value=(today - timedelta(days=DEFAULT_DAYS - 1),
                                                                        today), max_value=today, key="days")
first, last = (days[0], days[-1]) if isinstance(days, tuple | list) and days else (today, today)
tenants = ui.fetch("tenants", lambda: client.get("/admin/tenants"))
names = [t["name"] for t in tenants.get("data", [])]
preset = st.query_params.get("tenant")
choice = st.sidebar.selectbox("Tenant", [ALL, *names], index=names.index(preset) + 1 if preset in names else 0,
                              key="tenant")
if st.sidebar.button("Refresh", key="refresh"):
    st.cache_data.clear()
window = {"from": first.isoformat(), "to": (last + timedelta(days=1)).isoformat(),
          "tenant": None if choice == ALL else choice}

books = ui.fetch("price books", lambda: client.get("/admin/price-books"))
base = books.get("base", {}).get("version", "")
labels = {"base": f"base: the catalog's list prices ({base})"}
for v in books.get("data", []):
    labels[v["version"]] = f"{v['version']} (effective {v['effective_at'][:16].replace('T', ' ')})" + (
        f": {v['note']}" if v.get("note") else "")
versions = list(labels)
preset = st.query_params.get("version")
c1, c2 = st.columns([1, 2])
mode = c1.radio("Price book", [PUBLISHED, EDITED], key="mode", horizontal=True,
                help="a version published with POST /admin/price-books (or the base), or a table of your own")
version = c2.selectbox("Version" if mode == PUBLISHED else "Start from version", versions,
                       index=versions.index(preset) if preset in versions else len(versions) - 1,
                       format_func=labels.get, key="version")

report = ui.fetch("the re-pricing", lambda: client.post("/admin/reprice", {"price_book": version, **window}))
sent: dict[str, dict[str, str]] | None = None
if mode == EDITED:
    with st.form("edit"):
        st.markdown("Prices in USD per million tokens (`image`: per image) of the models used in the window, "
                    "starting from the version's. An empty cell is no price; a model with no price keeps its cost.")
        edited = st.data_editor(price_table(report), num_rows="dynamic", hide_index=True,
                                key=f"table-{version}", width="stretch",
                                column_config={u: st.column_config.TextColumn(u) for u in UNITS})
        st.form_submit_button("Re-price with this table", type="primary")
    sent = prices_of(edited)
    if not sent:
        st.info("The table prices no model: give a model its prices, then re-price.")
        st.stop()
    report = ui.fetch("the re-pricing", lambda: client.post("/admin/reprice", {"prices": sent, **window}))

total = report["total"]
old_total, new_total, delta_total = (Decimal(total[k]) for k in ("old_cost", "new_cost", "delta"))
scope = f" for {report['tenant']}" if report.get("tenant") else ""
st.subheader(f"{report['price_book']}{scope}, {first} to {last}")
m = st.columns(3)
m[0].metric("Cost as it stands", client.money(old_total, 9),
            help="as charged, or as corrected by re-pricing runs applied before")
m[1].metric("Re-priced", client.money(new_total, 9))
m[2].metric("Delta", client.money(delta_total, 9),
            delta=f"{delta_total / old_total * 100:+.2f}%" if old_total else None,
            help="re-priced minus as it stands: positive means tenants would be charged more")
n = st.columns(3)
n[0].metric("Usage events", f"{report['events']:,}", help="metered requests in the window (and tenant)")
n[1].metric("Events changing cost", f"{report['changed']:,}")
n[2].metric("Unpriced events", f"{report['unpriced']:,}",
            help="usage of models the book does not price: their cost is kept"
            + (f"; {report['unattributed']:,} events without a request were skipped" if report["unattributed"]
               else ""))

lines = pd.DataFrame(report["lines"], columns=["tenant", "model", "events", "old_cost", "new_cost", "delta"])
if lines.empty:
    st.info(f"No usage in this window. {ui.EMPTY_HINT}")
    st.stop()
for column in ("old_cost", "new_cost", "delta"):
    lines[column] = lines[column].map(Decimal)
lines["line"] = lines["tenant"] + " · " + lines["model"]

LABELS = alt.Axis(labelLimit=400)
side = lines.melt(id_vars=["line"], value_vars=["old_cost", "new_cost"], var_name="cost", value_name="usd")
side["cost"] = side["cost"].map({"old_cost": OLD, "new_cost": NEW})
side["usd"] = side["usd"].astype(float)
order = lines.sort_values("old_cost", ascending=False)["line"].tolist()
st.altair_chart(
    alt.Chart(side, title="Cost as it stands and re-priced, by tenant and model").mark_bar()
    .encode(x=alt.X("usd:Q", title="USD"), y=alt.Y("line:N", sort=order, title=None, axis=LABELS),
            yOffset=alt.YOffset("cost:N", sort=[OLD, NEW]),
            color=alt.Color("cost:N", sort=[OLD, NEW], title=None, legend=alt.Legend(orient="bottom")),
            tooltip=[alt.Tooltip("line:N", title="tenant · model"), alt.Tooltip("cost:N"),
                     alt.Tooltip("usd:Q", title="USD", format=",.9f")])
    .properties(height=alt.Step(14)), width="stretch")
changed = ui.as_float(lines[lines["delta"] != 0], "delta")
if changed.empty:
    st.success("The book changes no cost in this window: the delta is zero everywhere.")
else:
    changed["direction"] = changed["delta"].map(lambda d: "charged more" if d > 0 else "charged less")
    st.altair_chart(
        alt.Chart(changed, title="Delta (re-priced minus as it stands), where the cost changes").mark_bar()
        .encode(x=alt.X("delta:Q", title="USD"), y=alt.Y("line:N", sort="-x", title=None, axis=LABELS),
                color=alt.Color("direction:N", title=None, scale=alt.Scale(domain=["charged more", "charged less"],
                                                                         range=["#d62728", "#2ca02c"]),
                                legend=alt.Legend(orient="bottom")),
                tooltip=[alt.Tooltip("line:N", title="tenant · model"), alt.Tooltip("events:Q"),
                         alt.Tooltip("delta:Q", title="USD", format=",.9f")])
        .properties(height=alt.Step(26)), width="stretch")


def rows_height(count: int) -> int:
    return min(38 + 35 * count, 640)  # every row shown, up to a screenful


def exact_table(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["delta %"] = [f"{d / o * 100:+.2f}%" if o else "" for o, d in zip(out["old_cost"], out["delta"], strict=True)]
    for column in ("old_cost", "new_cost", "delta"):
        out[column] = out[column].map(client.exact)
    return out.rename(columns={"old_cost": f"{OLD} (USD)", "new_cost": f"{NEW} (USD)", "delta": "delta (USD)"})


st.subheader("By tenant and model")
st.dataframe(exact_table(lines[["tenant", "model", "events", "old_cost", "new_cost", "delta"]]), hide_index=True,
             width="stretch", height=rows_height(len(lines)))
st.subheader("By tenant")
per_tenant = lines.groupby("tenant", sort=True).agg(events=("events", "sum"), old_cost=("old_cost", "sum"),
                                                    new_cost=("new_cost", "sum"), delta=("delta", "sum"))
st.dataframe(exact_table(per_tenant.reset_index()), hide_index=True, width="stretch")

book_arg = version if sent is None else "prices.json"
command = (f"twoapi reprice --price-book {book_arg} --from {window['from']} --to {window['to']}"
           + (f" --tenant {window['tenant']}" if window["tenant"] else "") + " --apply")
st.caption(f"Dry run {report['run_id']}: nothing was recorded. Recording it (a RepricingRun with one correction "
           f"per usage event and a balance adjustment per tenant, applied once) is an audited action: `{command}`"
           + (" with the table saved as prices.json." if sent is not None else "."))
if sent is not None:
    st.download_button("Download the table (prices.json)", orjson.dumps(sent, option=orjson.OPT_INDENT_2),
                       file_name="prices.json", mime="application/json", key="download")
