"""What every page shares: the window picker, error and empty states, chart helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import altair as alt
import pandas as pd
import streamlit as st

from dashboards.client import DashboardError

T = TypeVar("T")

WINDOWS = {"Last 15 minutes": "15m", "Last hour": "1h", "Last 6 hours": "6h", "Last 24 hours": "24h",
           "Last 7 days": "7d", "Last 30 days": "30d"}
# The bucket each window is charted in (what `auto` would pick, spelled out where a
# query needs it explicitly).
BUCKETS = {"15m": "minute", "1h": "minute", "6h": "five_minutes", "24h": "hour", "7d": "hour", "30d": "day"}
EMPTY_HINT = "Send some traffic through the gateway (for a demo: `twoapi demo`), then refresh."


def window(default: str = "Last hour") -> str:
    """The time window picked in the sidebar, as the API's `since` (e.g. "1h")."""
    label = st.sidebar.selectbox("Time window", list(WINDOWS), index=list(WINDOWS).index(default), key="window")
    if st.sidebar.button("Refresh", key="refresh"):
        st.cache_data.clear()
    return WINDOWS[label]


def fetch(what: str, load: Callable[[], T]) -> T:
    """Run `load` with a spinner; a gateway failure stops the page with the reason."""
    try:
        with st.spinner(f"Loading {what}…"):
            return load()
    except DashboardError as error:
        st.error(f"Could not load {what}. {error}")
        st.stop()
        raise  # unreachable: st.stop() ends the run


def empty(df: pd.DataFrame, what: str) -> bool:
    if df.empty:
        st.info(f"No {what} in this window. {EMPTY_HINT}")
        return True
    return False


def as_float(df: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """A copy for charts: Decimal money as float (pictures only; tables keep Decimal)."""
    out = df.copy()
    for column in columns:
        if column in out:
            out[column] = out[column].astype(float)
    return out


def time_chart(df: pd.DataFrame, y: str, color: str | None, title: str, y_title: str, *,
               mark: str = "line", stack: bool = False, fmt: str = ",.4f") -> alt.Chart:
    """A series over the time buckets. Bars sit on an ordinal axis of bucket labels (a
    bar per bucket, as wide as the chart allows); lines on a time axis."""
    data = df.copy()
    tooltip = [alt.Tooltip("bucket:T", title="time", format="%b %d %H:%M"), alt.Tooltip(f"{y}:Q", format=fmt)]
    if mark == "bar":
        data["period"] = data["bucket"].dt.strftime(_label_format(data["bucket"]))
        chart = alt.Chart(data, title=title).mark_bar()
        x = alt.X("period:O", title=None, sort=None, axis=alt.Axis(labelAngle=0, labelOverlap=True))
    else:
        chart = alt.Chart(data, title=title).mark_line(point=True)
        x = alt.X("bucket:T", title=None)
    encoding: dict[str, Any] = {"x": x, "y": alt.Y(f"{y}:Q", title=y_title, stack="zero" if stack else None),
                                "tooltip": tooltip}
    if color:
        encoding["color"] = alt.Color(f"{color}:N", title=None,
                                      legend=alt.Legend(orient="bottom", columns=3, labelLimit=260))
        tooltip.append(alt.Tooltip(f"{color}:N"))
    return chart.encode(**encoding).properties(height=280)


def bar_chart(df: pd.DataFrame, x: str, y: str, title: str, x_title: str, fmt: str = ",.4f") -> alt.Chart:
    # A step per bar, not a fixed height: a fixed small height collapses in Streamlit.
    return (alt.Chart(df, title=title).mark_bar()
            .encode(x=alt.X(f"{x}:Q", title=x_title), y=alt.Y(f"{y}:N", sort="-x", title=None),
                    tooltip=[alt.Tooltip(f"{y}:N"), alt.Tooltip(f"{x}:Q", format=fmt)])
            .properties(height=alt.Step(26)))


def _label_format(times: pd.Series) -> str:
    """Bucket labels: times of day within a day, dates across days."""
    if times.empty:
        return "%H:%M"
    span = times.max() - times.min()
    if span >= pd.Timedelta(days=2):
        return "%b %d"
    return "%H:%M" if span < pd.Timedelta(hours=20) else "%b %d %H:%M"
