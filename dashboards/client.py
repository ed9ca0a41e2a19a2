"""The dashboards' only source of data: the gateway's Admin API (analytics, price books, re-pricing).

`TWOAPI_GATEWAY_URL` (default http://127.0.0.1:8080) and `TWOAPI_ADMIN_TOKEN` say
where and as whom. Answers are cached for a few seconds per (query, parameters), so
several charts on a page share one request and a rerun does not hammer the gateway.
The re-pricing page's dry runs (POST /admin/reprice) are cached longer, by their body.
Money arrives as exact decimal strings and is kept as Decimal for display; charts get
floats, because a chart is a picture of money, not money.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pandas as pd
import streamlit as st

CACHE_TTL_S = 3
POST_CACHE_TTL_S = 60
POST_TIMEOUT_S = 300
MONEY_COLUMNS = ("cost", "spend", "balance", "amount", "credits")


class DashboardError(Exception):
    """The gateway could not answer; the message is for the person looking."""


def gateway_url() -> str:
    return (os.environ.get("TWOAPI_GATEWAY_URL") or f"http://127.0.0.1:{os.environ.get('PORT') or 8080}").rstrip("/")


def _headers() -> dict[str, str]:
    token = os.environ.get("TWOAPI_ADMIN_TOKEN")
    return {"authorization": f"Bearer {token}"} if token else {}


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def _get(url: str, path: str, params: tuple[tuple[str, str], ...], token_hint: str) -> dict[str, Any]:
    try:
        response = httpx.get(url + path, params=dict(params), headers=_headers(), timeout=30)
    except httpx.HTTPError as error:
        raise DashboardError(f"The gateway at {url} is not answering ({type(error).__name__}).") from None
    return _answer(response)


@st.cache_data(ttl=POST_CACHE_TTL_S, show_spinner=False)
def _post(url: str, path: str, body: bytes, token_hint: str) -> dict[str, Any]:
    try:
        response = httpx.post(url + path, content=body, headers={**_headers(), "content-type": "application/json"},
                              timeout=POST_TIMEOUT_S)
    except httpx.HTTPError as error:
        raise DashboardError(f"The gateway at {url} is not answering ({type(error).__name__}).") from None
    return _answer(response)


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise DashboardError(f"The gateway answered {response.status_code} without JSON.") from None
    if response.status_code != 200:
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        raise DashboardError(f"{response.status_code}: {message or 'the gateway refused the request'}")
    return body


def get(path: str, **params: Any) -> dict[str, Any]:
    clean = tuple(sorted((k, str(v)) for k, v in params.items() if v not in (None, "")))
    return _get(gateway_url(), path, clean, str(hash(_headers().get("authorization"))))


def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A read that takes a JSON body (POST /admin/reprice: a dry run, nothing recorded),
    cached by its body for POST_CACHE_TTL_S: the answer is expensive and the past is
    stable."""
    clean = {k: v for k, v in body.items() if v not in (None, "")}
    encoded = orjson.dumps(clean, option=orjson.OPT_SORT_KEYS)
    return _post(gateway_url(), path, encoded, str(hash(_headers().get("authorization"))))


def query(name: str, **params: Any) -> dict[str, Any]:
    return get(f"/admin/analytics/{name}", **params)


def frame(answer: dict[str, Any]) -> pd.DataFrame:
    """The answer's rows as a DataFrame: times parsed, money as Decimal."""
    df = pd.DataFrame(answer.get("data") or [], columns=answer.get("columns"))
    for column in ("bucket", "time"):
        if column in df:
            df[column] = pd.to_datetime(df[column], utc=True)
    if "group" in df:  # requests that failed before reaching any model have none
        df["group"] = df["group"].replace("", "(no model)")
    for column in MONEY_COLUMNS:
        if column in df:
            df[column] = df[column].map(lambda v: Decimal(v) if v is not None else Decimal(0))
    return df


def csv_text(name: str, **params: Any) -> str:
    """A query's answer as CSV, exactly as the gateway writes it."""
    try:
        response = httpx.get(f"{gateway_url()}/admin/analytics/{name}", params={**params, "format": "csv"},
                             headers=_headers(), timeout=60)
    except httpx.HTTPError as error:
        raise DashboardError(f"The gateway is not answering ({type(error).__name__}).") from None
    if response.status_code != 200:
        raise DashboardError(f"{response.status_code}: the gateway refused the export")
    return response.text


def money(value: Any, places: int = 4) -> str:
    """$1,234.5678: rounded for reading (the tables keep every digit)."""
    amount = Decimal(str(value or 0))
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.{places}f}"


def exact(value: Any) -> str:
    """Every digit of an amount, never in exponent form ("0.000000000", not "0E-9")."""
    return format(Decimal(str(value if value is not None else 0)), "f")


def percent(value: Any) -> str:
    return f"{float(value or 0) * 100:.1f}%"
