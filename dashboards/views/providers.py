"""Providers: latency percentiles over time, error and fallback rates, circuit events,
tokens per second."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # streamlit runs pages as scripts
    sys.path.insert(0, ROOT)

import altair as alt  # noqa: E402
import streamlit as st  # noqa: E402

from dashboards import client, ui  # noqa: E402

st.title("Providers")
since = ui.window()
percentile = st.sidebar.radio("Latency percentile", ["p50", "p95", "p99"], index=1, horizontal=True, key="pct")

health = client.frame(ui.fetch("provider health", lambda: client.query("provider_health", since=since)))
latency = client.frame(ui.fetch("latency", lambda: client.query("latency", since=since)))
if ui.empty(health, "requests"):
    st.stop()

columns = st.columns(max(len(health), 1))
for column, row in zip(columns, health.itertuples(), strict=False):
    column.metric(row.provider, f"{int(row.requests or 0):,} requests",
                  delta=f"{client.percent(row.error_rate)} errors · {client.percent(row.fallback_rate)} fell back",
                  delta_color="off", help="requests first sent to this provider; attempts: "
                  f"{int(row.attempts or 0):,}, of which {client.percent(row.attempt_error_rate)} failed")

series = client.frame(ui.fetch("latency over time", lambda: client.query("latency_over_time", since=since)))
left, right = st.columns(2)
if not ui.empty(series, "latency samples"):
    chart = series.rename(columns={"group": "provider"})
    left.altair_chart(ui.time_chart(chart, f"{percentile}_ms", "provider", f"Total latency {percentile}", "ms",
                                    fmt=",.0f"), width="stretch")
    ttft = chart.dropna(subset=[f"ttft_{percentile}_ms"])
    if ttft.empty:
        right.info("No streamed requests in this window: time to first token needs streams.")
    else:
        right.altair_chart(ui.time_chart(ttft, f"ttft_{percentile}_ms", "provider",
                                         f"Time to first token {percentile}", "ms", fmt=",.0f"), width="stretch")

timeline = client.frame(ui.fetch("rates over time", lambda: client.query(
    "provider_health", since=since, bucket=ui.BUCKETS[since])))
left, right = st.columns(2)
long = health.melt(id_vars="provider", value_vars=["error_rate", "retry_rate", "fallback_rate", "attempt_error_rate"],
                   var_name="rate", value_name="share")
left.altair_chart(
    alt.Chart(long, title="Error, retry and fallback rates").mark_bar()
    .encode(x=alt.X("provider:N", title=None), xOffset="rate:N",
            y=alt.Y("share:Q", axis=alt.Axis(format="%"), title=None),
            color=alt.Color("rate:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=["provider", "rate", alt.Tooltip("share:Q", format=".1%")]).properties(height=260),
    width="stretch")
if not timeline.empty:
    right.altair_chart(ui.time_chart(timeline, "error_rate", "provider", "Request error rate over time",
                                     "share", fmt=".1%")
                       .encode(y=alt.Y("error_rate:Q", axis=alt.Axis(format="%"), title=None)), width="stretch")

left, right = st.columns(2)
speed = client.frame(ui.fetch("throughput", lambda: client.query("throughput", since=since)))
if speed.empty:
    left.info("No completed generations in this window.")
else:
    left.altair_chart(ui.time_chart(speed.rename(columns={"group": "provider"}), "tokens_per_s", "provider",
                                    "Output tokens per second", "tokens/s", fmt=",.0f"), width="stretch")
circuits = client.frame(ui.fetch("circuit events", lambda: client.query("circuit_events", since=since)))
with right:
    st.markdown("**Circuit events**")
    if circuits.empty:
        st.success("No circuit breaker opened in this window.")
    else:
        st.altair_chart(
            alt.Chart(circuits).mark_tick(thickness=3, size=28)
            .encode(x=alt.X("time:T", title=None), y=alt.Y("model:N", title=None),
                    color=alt.Color("event:N", scale=alt.Scale(domain=["CircuitOpened", "CircuitClosed"],
                                                                range=["#d62728", "#2ca02c"]), title=None),
                    tooltip=["time:T", "event", "model", "reason", "request_id"]).properties(height=180),
            width="stretch")
        st.dataframe(circuits[["time", "event", "model", "reason", "request_id"]], hide_index=True, width="stretch")

st.subheader("By model")
if not latency.empty:
    st.dataframe(latency, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.0f") for c in latency.columns
                                if c.endswith("_ms")})
