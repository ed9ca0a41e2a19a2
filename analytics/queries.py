"""The analytical queries: one catalogue, parameterised, tenant-scoped by construction.

Every query is a function of (store, Params, Scope). Values only ever reach SQL as
bound parameters (`{name:Type}`, bound by ClickHouse itself); the only text spliced
into SQL comes from the fixed tables below (columns, bucket functions), chosen by
whitelisted names. A `Scope` with a tenant adds `tenant = {scope_tenant:String}` to
every table a query reads: the tenant-facing API builds its Scope from the caller's
key and never from the request, so no parameter can widen it.

Long windows read the rollups: `usage_daily` and `usage_hourly` for money and tokens
(whole days from the first, the hours at a window's edges from the second),
`latency_daily` and `latency_hourly` for the latency percentiles (the same split), and
`provider_hourly`, `attempts_hourly` for rates (the provider rollups have no tenant
column, so they serve only unscoped questions). Short windows, minute
buckets and a tenant's own latency read the raw rows; `totals`, the audit's exact
per-tenant totals, reads the raw rows with FINAL.

Money follows re-pricing: a `cost_corrections` row per re-priced usage event holds
the difference, in the bucket and under the dimensions of its request's row. The
raw-row money queries read requests and corrections together (`money_rows`); the
usage rollups have the corrections added by their materialized views.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from analytics.store import AnalyticsStore

MAX_LIMIT = 10_000
ROLLUP_MIN_WINDOW = timedelta(hours=6)  # below this, raw rows are cheap and finer
QUANTILES = "0.5, 0.95, 0.99"


class QueryError(ValueError):
    """Bad parameters: the caller's mistake (400), with the parameter's name."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Scope:
    tenant: str | None = None  # None: every tenant (the admin API)

    @property
    def scoped(self) -> bool:
        return self.tenant is not None


# name -> (raw column, rollup column)
DIMENSIONS: dict[str, str] = {
    "tenant": "tenant",
    "key": "key_id",
    "model": "model",
    "provider": "provider",
    "none": "''",
}
RAW_BUCKETS = {
    "minute": "toStartOfMinute(time)",
    "five_minutes": "toStartOfFiveMinutes(time)",
    "hour": "toStartOfHour(time)",
    "day": "toStartOfDay(time)",
}
ROLLUP_BUCKETS = {"hour": "hour", "day": "toStartOfDay(hour)"}
RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(slots=True)
class Params:
    """The parsed query string. Unknown names are refused so typos do not silently
    widen a query."""

    since: datetime
    until: datetime
    bucket: str = "auto"
    by: str | None = None  # each query has its own default
    tenant: str | None = None
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    event: str | None = None
    request_id: str | None = None
    limit: int = 100
    offset: int = 0
    source: str = "auto"  # auto | raw | rollup

    KNOWN = ("since", "until", "bucket", "by", "tenant", "key_id", "model", "provider", "event", "request_id",
             "limit", "offset", "source")

    @classmethod
    def parse(cls, raw: Mapping[str, str], now: datetime | None = None) -> Params:
        now = now or datetime.now(UTC)
        unknown = sorted(set(raw) - set(cls.KNOWN))
        if unknown:
            raise QueryError(unknown[0], f"unknown parameter {unknown[0]!r}; known: {', '.join(cls.KNOWN)}")
        until = _time(raw.get("until"), "until", now) if raw.get("until") else now + timedelta(minutes=1)
        since = _time(raw.get("since"), "since", now) if raw.get("since") else now - timedelta(hours=24)
        if since >= until:
            raise QueryError("since", "since must be before until")
        bucket = raw.get("bucket") or "auto"
        if bucket != "auto" and bucket not in RAW_BUCKETS:
            raise QueryError("bucket", f"bucket must be auto or one of {', '.join(RAW_BUCKETS)}")
        by = raw.get("by") or None
        if by is not None and by not in DIMENSIONS:
            raise QueryError("by", f"by must be one of {', '.join(DIMENSIONS)}")
        source = raw.get("source") or "auto"
        if source not in ("auto", "raw", "rollup"):
            raise QueryError("source", "source must be auto, raw or rollup")
        return cls(
            since=since, until=until, bucket=bucket, by=by, tenant=raw.get("tenant") or None,
            key_id=raw.get("key_id") or None, model=raw.get("model") or None, provider=raw.get("provider") or None,
            event=raw.get("event") or None, request_id=raw.get("request_id") or None,
            limit=_int(raw.get("limit"), "limit", 100, 1, MAX_LIMIT), offset=_int(raw.get("offset"), "offset", 0, 0),
            source=source,
        )

    @property
    def window(self) -> timedelta:
        return self.until - self.since

    def resolved_bucket(self) -> str:
        if self.bucket != "auto":
            return self.bucket
        window = self.window
        if window <= timedelta(hours=2):
            return "minute"
        if window <= timedelta(hours=12):
            return "five_minutes"
        if window <= timedelta(days=7):
            return "hour"
        return "day"

    def echo(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "bucket": self.resolved_bucket(),
                "by": self.by, "tenant": self.tenant, "key_id": self.key_id, "model": self.model,
                "provider": self.provider, "event": self.event, "request_id": self.request_id,
                "limit": self.limit, "offset": self.offset}


@dataclass(slots=True)
class Where:
    """Conditions and their bound values. Only fixed SQL fragments are added here."""

    clauses: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)

    def add(self, clause: str, **values: Any) -> None:
        self.clauses.append(clause)
        self.values.update(values)

    def sql(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "1"


@dataclass(frozen=True, slots=True)
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    source: str  # raw | rollup
    summary: dict[str, Any] | None = None

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def filters(p: Params, scope: Scope, *, time_col: str = "time", rollup: bool = False,
            dims: tuple[str, ...] = ("tenant", "key_id", "model", "provider"), window: bool = True) -> Where:
    """The common WHERE: scope, window (unless `window` is False), and the dimension
    filters the table has."""
    where = Where()
    if scope.scoped:
        where.add("tenant = {scope_tenant:String}", scope_tenant=scope.tenant)
    elif p.tenant is not None and "tenant" in dims:
        where.add("tenant = {tenant:String}", tenant=p.tenant)
    if window and rollup:
        where.add(f"{time_col} >= toStartOfHour({{since:DateTime64(3, 'UTC')}})", since=_ch_time(p.since))
    elif window:
        where.add(f"{time_col} >= {{since:DateTime64(3, 'UTC')}}", since=_ch_time(p.since))
    if window:
        where.add(f"{time_col} < {{until:DateTime64(3, 'UTC')}}", until=_ch_time(p.until))
    if p.key_id is not None and "key_id" in dims:
        where.add("key_id = {key_id:String}", key_id=p.key_id)
    if p.model is not None and "model" in dims:
        where.add("model = {model:String}", model=p.model)
    if p.provider is not None and "provider" in dims:
        where.add("provider = {provider:String}", provider=p.provider)
    return where


def use_rollup(p: Params, scope: Scope | None = None) -> bool:
    """Rollups for long windows in hour or day buckets. `scope` is given for the
    rollup without a tenant column (provider_hourly): a tenant's or a key's own
    numbers then come from the raw rows."""
    if scope is not None and (scope.scoped or p.tenant is not None or p.key_id is not None):
        return False
    if p.source != "auto":
        return p.source == "rollup"
    return p.resolved_bucket() in ROLLUP_BUCKETS and p.window >= ROLLUP_MIN_WINDOW


USAGE_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost")
REPRICING = "reprice:"  # what the BalanceAdjusted of a re-pricing run corrects: reprice:<run id>


def money_rows(where: Where, final: bool = False) -> str:
    """The raw rows that carry money: one per request (`n` = 1, `failed`, tokens,
    cost) and one per re-pricing correction (cost only: it adds no request, error or
    token). Both tables have the columns `where` filters on."""
    f = " FINAL" if final else ""
    clause = where.sql()
    return (f"(SELECT time, tenant, key_id, provider, model, toUInt8(1) AS n, toUInt8(status >= 400) AS failed,"
            f" input_tokens, output_tokens, cached_tokens, cost FROM requests{f} WHERE {clause}"
            f" UNION ALL SELECT time, tenant, key_id, provider, model, toUInt8(0), toUInt8(0), toUInt64(0),"
            f" toUInt64(0), toUInt64(0), delta FROM cost_corrections{f} WHERE {clause})")


def usage_rollup(p: Params, scope: Scope, daily: bool) -> tuple[str, Where]:
    """A subquery over the usage rollups covering the window to the hour: columns
    `hour`, tenant, key_id, provider, model and the sums. With `daily`, the whole days
    inside the window come from usage_daily and only the hours at its edges from
    usage_hourly (30 days: ~90k rows instead of ~2M at 10M requests)."""
    where = filters(p, scope, time_col="", dims=("tenant", "key_id", "model", "provider"), window=False)
    columns = "tenant, key_id, provider, model, " + ", ".join(USAGE_SUMS)
    return by_days_and_edge_hours(p, where, f"SELECT hour, {columns} FROM usage_hourly",
                                  f"SELECT toDateTime(day, 'UTC') AS hour, {columns} FROM usage_daily"
                                  if daily else None), where


def by_days_and_edge_hours(p: Params, where: Where, hourly: str, daily: str | None) -> str:
    """The rows of a rollup covering the window to the hour. `hourly` selects from an
    hourly rollup (its `hour` column); with `daily` (a daily rollup's rows, its day as
    `hour`), the whole days inside the window come from the daily one and only the
    hours at the window's edges from the hourly one."""
    start = p.since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    where.values.update(h0=_ch_time(start), until=_ch_time(p.until))
    hours = (f"{hourly} WHERE {where.sql()}"
             " AND hour >= {h0:DateTime64(3, 'UTC')} AND hour < {until:DateTime64(3, 'UTC')}")
    first_day = start.replace(hour=0) + (timedelta(days=1) if start.hour else timedelta(0))
    end_day = p.until.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if daily is None or end_day <= first_day:
        return hours
    where.values.update(d0=first_day.date().isoformat(), d1=end_day.date().isoformat(),
                        d0t=_ch_time(first_day), d1t=_ch_time(end_day))
    return (f"{daily} WHERE {where.sql()} AND day >= {{d0:Date}} AND day < {{d1:Date}}"
            f" UNION ALL {hours} AND (hour < {{d0t:DateTime64(3, 'UTC')}} OR hour >= {{d1t:DateTime64(3, 'UTC')}})")


# -- the queries ------------------------------------------------------------------


def usage(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Requests, errors, tokens and cost per time bucket, split by `by`."""
    rollup = use_rollup(p)
    group = DIMENSIONS[p.by or "model"]
    if rollup:
        bucket = ROLLUP_BUCKETS.get(p.resolved_bucket(), "hour")
        source, where = usage_rollup(p, scope, daily=p.resolved_bucket() == "day")
        sql = f"""
            SELECT {bucket} AS bucket, {group} AS group, sum(requests) AS requests, sum(errors) AS errors,
                   sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                   sum(cached_tokens) AS cached_tokens, sum(cost) AS cost
            FROM ({source})
            GROUP BY bucket, group ORDER BY bucket, group"""
    else:
        bucket = RAW_BUCKETS[p.resolved_bucket()]
        where = filters(p, scope)
        sql = f"""
            SELECT {bucket} AS bucket, {group} AS group, sum(n) AS requests, sum(failed) AS errors,
                   sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                   sum(cached_tokens) AS cached_tokens, sum(cost) AS cost
            FROM {money_rows(where)}
            GROUP BY bucket, group ORDER BY bucket, group"""
    return _run(store, sql, where, "rollup" if rollup else "raw")


def breakdown(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Totals over the window split by `by` (tenant, key, model, provider), biggest cost first."""
    rollup = use_rollup(p)
    group = DIMENSIONS[p.by or "model"]
    if rollup:
        source, where = usage_rollup(p, scope, daily=True)
        source, requests_expr, errors_expr = f"({source})", "sum(requests)", "sum(errors)"
    else:
        where = filters(p, scope)
        source, requests_expr, errors_expr = money_rows(where), "sum(n)", "sum(failed)"
    sql = f"""
        SELECT {group} AS group, {requests_expr} AS requests, {errors_expr} AS errors,
               round(errors / greatest(requests, 1), 6) AS error_rate,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cached_tokens) AS cached_tokens, sum(cost) AS cost
        FROM {source}
        GROUP BY group ORDER BY cost DESC, requests DESC, group LIMIT {{limit:UInt32}}"""
    where.values["limit"] = p.limit
    return _run(store, sql, where, "rollup" if rollup else "raw")


def top_spenders(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Who spent most: tenants for the admin, keys for a tenant (or `by` as given)."""
    return breakdown(store, _replace(p, by=p.by or ("key" if scope.scoped else "tenant")), scope)


def latency(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Total latency and TTFT percentiles (p50, p95, p99) by provider and model."""
    rollup = use_rollup(p, scope)
    if rollup:  # whole days from latency_daily, the window's edge hours from latency_hourly
        where = filters(p, scope, dims=("model", "provider"), window=False)
        columns = "provider, model, requests, latency_q, ttft_q"
        source = by_days_and_edge_hours(p, where, f"SELECT hour, {columns} FROM latency_hourly",
                                        f"SELECT toDateTime(day, 'UTC') AS hour, {columns} FROM latency_daily")
        sql = f"""
            SELECT provider, model, sum(requests) AS requests,
                   quantilesTDigestMerge({QUANTILES})(latency_q) AS latency,
                   quantilesTDigestMerge({QUANTILES})(ttft_q) AS ttft
            FROM ({source}) WHERE provider != ''
            GROUP BY provider, model ORDER BY provider, model"""
    else:
        where = filters(p, scope)
        sql = f"""
            SELECT provider, model, count() AS requests,
                   quantilesTDigest({QUANTILES})(latency_ms) AS latency, quantilesTDigest({QUANTILES})(ttft_ms) AS ttft
            FROM requests WHERE {where.sql()} AND provider != ''
            GROUP BY provider, model ORDER BY provider, model"""
    return _percentiles(_run(store, sql, where, "rollup" if rollup else "raw"))


def latency_over_time(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Latency and TTFT percentiles per time bucket, by provider (or `by=model`)."""
    rollup = use_rollup(p, scope)
    group = "model" if p.by == "model" else "provider"
    if rollup:
        bucket = ROLLUP_BUCKETS.get(p.resolved_bucket(), "hour")
        where = filters(p, scope, time_col="hour", rollup=True, dims=("model", "provider"))
        sql = f"""
            SELECT {bucket} AS bucket, {group} AS group, sum(requests) AS requests,
                   quantilesTDigestMerge({QUANTILES})(latency_q) AS latency,
                   quantilesTDigestMerge({QUANTILES})(ttft_q) AS ttft
            FROM latency_hourly WHERE {where.sql()} AND provider != ''
            GROUP BY bucket, group ORDER BY bucket, group"""
    else:
        bucket = RAW_BUCKETS[p.resolved_bucket()]
        where = filters(p, scope)
        sql = f"""
            SELECT {bucket} AS bucket, {group} AS group, count() AS requests,
                   quantilesTDigest({QUANTILES})(latency_ms) AS latency, quantilesTDigest({QUANTILES})(ttft_ms) AS ttft
            FROM requests WHERE {where.sql()} AND provider != ''
            GROUP BY bucket, group ORDER BY bucket, group"""
    return _percentiles(_run(store, sql, where, "rollup" if rollup else "raw"))


def provider_health(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Per provider first tried: request error rate, retry rate, fallback rate; and per
    provider tried: the attempts' own failure rate (a provider only ever tried as a
    fallback has attempts and no requests). With `bucket`, per time bucket."""
    rollup = use_rollup(p, scope)
    series = p.bucket != "auto"
    if rollup:
        where = filters(p, scope, time_col="hour", rollup=True, dims=())
        bucket = ROLLUP_BUCKETS.get(p.resolved_bucket(), "hour") if series else "toDateTime(0)"
        requests_sql = f"""
            SELECT {bucket} AS bucket, first_provider AS provider, sum(requests) AS requests,
                   sum(errors) AS errors, sum(retried) AS retried, sum(fallbacks) AS fallbacks
            FROM provider_hourly WHERE {where.sql()} AND first_provider != ''
            GROUP BY bucket, provider"""
        attempt_where = filters(p, scope, time_col="hour", rollup=True, dims=())
        attempts_sql = f"""
            SELECT {bucket} AS bucket, provider, sum(attempts) AS attempts, sum(failures) AS failures
            FROM attempts_hourly WHERE {attempt_where.sql()} GROUP BY bucket, provider"""
    else:
        where = filters(p, scope, dims=("tenant", "key_id"))
        bucket = RAW_BUCKETS[p.resolved_bucket()] if series else "toDateTime(0)"
        requests_sql = f"""
            SELECT {bucket} AS bucket, first_provider AS provider, count() AS requests,
                   countIf(status >= 400) AS errors, countIf(retries > 0) AS retried, sum(fallback_used) AS fallbacks
            FROM requests WHERE {where.sql()} AND first_provider != ''
            GROUP BY bucket, provider"""
        attempt_where = filters(p, scope, dims=("tenant", "key_id"))
        attempts_sql = f"""
            SELECT {bucket} AS bucket, provider, count() AS attempts, countIf(outcome = 'error') AS failures
            FROM attempts WHERE {attempt_where.sql()} GROUP BY bucket, provider"""
    sql = f"""
        SELECT if(r.provider = '', a.bucket, r.bucket) AS bucket,
               if(r.provider = '', a.provider, r.provider) AS provider, r.requests AS requests,
               round(r.errors / greatest(r.requests, 1), 6) AS error_rate,
               round(r.retried / greatest(r.requests, 1), 6) AS retry_rate,
               round(r.fallbacks / greatest(r.requests, 1), 6) AS fallback_rate,
               a.attempts AS attempts, round(a.failures / greatest(a.attempts, 1), 6) AS attempt_error_rate
        FROM ({requests_sql}) AS r FULL JOIN ({attempts_sql}) AS a ON r.bucket = a.bucket AND r.provider = a.provider
        ORDER BY bucket, provider"""
    values = {**where.values, **attempt_where.values}
    result = _run(store, sql, Where(values=values), "rollup" if rollup else "raw")
    if series:
        return result
    columns = [c for c in result.columns if c != "bucket"]
    return Result(columns, [row[1:] for row in result.rows], result.source)


def throughput(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Output tokens per second of generation (after the first token), per bucket and provider."""
    rollup = use_rollup(p, scope)
    group = "model" if p.by == "model" else "provider"
    if rollup:
        bucket = ROLLUP_BUCKETS.get(p.resolved_bucket(), "hour")
        where = filters(p, scope, time_col="hour", rollup=True, dims=("model", "provider"))
        sql = f"""
            SELECT {bucket} AS bucket, {group} AS group, sum(gen_tokens) AS tokens, sum(generation_ms) AS ms,
                   round(tokens / greatest(ms / 1000, 0.001), 2) AS tokens_per_s
            FROM provider_hourly WHERE {where.sql()} AND provider != ''
            GROUP BY bucket, group HAVING ms > 0 ORDER BY bucket, group"""
    else:
        bucket = RAW_BUCKETS[p.resolved_bucket()]
        where = filters(p, scope)
        sql = f"""
            SELECT {bucket} AS bucket, {group} AS group,
                   sumIf(output_tokens, status < 400 AND generation_ms > 0) AS tokens,
                   sumIf(generation_ms, status < 400 AND generation_ms > 0) AS ms,
                   round(tokens / greatest(ms / 1000, 0.001), 2) AS tokens_per_s
            FROM requests WHERE {where.sql()} AND provider != ''
            GROUP BY bucket, group HAVING ms > 0 ORDER BY bucket, group"""
    return _run(store, sql, where, "rollup" if rollup else "raw")


def circuit_events(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Circuit breakers opened and closed, newest first."""
    where = filters(p, scope, dims=("tenant",))
    sql = f"""
        SELECT time, event, model, JSONExtractString(data, 'reason') AS reason, request_id
        FROM ledger_events WHERE {where.sql()} AND event IN ('CircuitOpened', 'CircuitClosed')
        ORDER BY time DESC LIMIT {{limit:UInt32}}"""
    where.values["limit"] = p.limit
    return _run(store, sql, where, "raw")


def totals(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Exact totals per tenant (FINAL on the raw rows, re-pricing corrections included):
    what reconciles with the ledger."""
    where = filters(p, scope)
    sql = f"""
        SELECT tenant, sum(n) AS requests, sum(failed) AS errors, sum(input_tokens) AS input_tokens,
               sum(output_tokens) AS output_tokens, sum(cached_tokens) AS cached_tokens, sum(cost) AS cost
        FROM {money_rows(where, final=True)}
        GROUP BY tenant ORDER BY tenant"""
    return _run(store, sql, where, "raw")


def budget(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """A tenant's money: credits, adjustments, spend, balance, this month's spend
    against its monthly cap (Tenant.LimitsSet), and per bucket over the window the
    spend and the balance after it (the burn-down). The spend is read from the usage
    rollups, whose sums are as exact as the rows (every row counted once: see
    analytics/projection.py), so a month of a large tenant costs a few thousand rows.

    Spend is as re-priced (the usage rollups hold the corrections). A re-pricing run
    moves the balance by its own BalanceAdjusted (corrects `reprice:<run id>`), which
    is shown apart (`repricing_adjustments`), not among `adjustments`: the spend
    holds that change already. The balance is the ledger's (credits + every
    adjustment - usage as metered), so credits + adjustments - spend equals it as long
    as each run's adjustment is the opposite of its corrections (`repriced`)."""
    tenant = _one_tenant(p, scope)
    head_sql = """
        SELECT
          (SELECT sum(amount) FROM ledger_events FINAL WHERE tenant = {tenant:String} AND aggregate = 'Tenant'
             AND event = 'CreditsAdded') AS credits,
          (SELECT sum(amount) FROM ledger_events FINAL WHERE tenant = {tenant:String} AND aggregate = 'Tenant'
             AND event = 'BalanceAdjusted'
             AND NOT startsWith(JSONExtractString(data, 'corrects'), {repricing:String})) AS adjustments,
          (SELECT sum(amount) FROM ledger_events FINAL WHERE tenant = {tenant:String} AND aggregate = 'Tenant'
             AND event = 'BalanceAdjusted'
             AND startsWith(JSONExtractString(data, 'corrects'), {repricing:String})) AS repricing_adjustments,
          (SELECT sum(delta) FROM cost_corrections FINAL WHERE tenant = {tenant:String}) AS repriced,
          (SELECT sum(cost) FROM usage_daily WHERE tenant = {tenant:String}) AS spend,
          (SELECT sum(cost) FROM usage_daily WHERE tenant = {tenant:String}
             AND day >= toStartOfMonth(toDate(now('UTC')))) AS month_spend,
          (SELECT argMax(JSONExtractString(data, 'monthly_cap'), notification_id) FROM ledger_events
             WHERE tenant = {tenant:String} AND aggregate = 'Tenant' AND event = 'LimitsSet') AS monthly_cap"""
    _, head = store.query(head_sql, {"tenant": tenant, "repricing": REPRICING})
    credits, adjustments, repricing_adjustments, repriced, spend, month_spend, cap = head[0]
    balance_now = credits + adjustments + repricing_adjustments - (spend - repriced)
    series = usage(store, _replace(p, by="none", tenant=tenant if not scope.scoped else None), scope)
    spends = [(row[0], row[-1]) for row in series.rows]  # (bucket, cost)
    # The burn-down, backwards from today's balance: after each bucket, the balance
    # was today's plus what was spent in the buckets after it (Decimal throughout).
    rows, later = [], Decimal(0)
    now = datetime.now(UTC)
    if p.until < now:  # what was spent after the window still separates it from today's balance
        after = usage(store, _replace(p, since=p.until, until=now + timedelta(minutes=1), bucket="auto", by="none",
                                      tenant=tenant if not scope.scoped else None), scope)
        later = sum((row[-1] for row in after.rows), Decimal(0))
    for when, bucket_spend in reversed(spends):
        rows.append((when, bucket_spend, balance_now + later))
        later += bucket_spend
    rows.reverse()
    cap_value = Decimal(cap) if cap else None
    summary = {
        "tenant": tenant, "credits": credits, "adjustments": adjustments, "spend": spend, "balance": balance_now,
        "repriced": repriced, "repricing_adjustments": repricing_adjustments,
        "month_spend": month_spend, "monthly_cap": cap_value,
        "month_remaining": (cap_value - month_spend) if cap_value is not None else None,
    }
    return Result(["bucket", "spend", "balance"], rows, series.source, summary)


def ledger_lines(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """The ledger of a tenant (or of all, for the admin), newest first, filtered by
    time, key, model and event type; each line names its request."""
    where = filters(p, scope, dims=("tenant", "key_id", "model", "provider"))
    if p.event is not None:
        where.add("event = {event:String}", event=p.event)
    if p.request_id is not None:
        where.add("request_id = {request_id:String}", request_id=p.request_id)
    sql = f"""
        SELECT time, notification_id, tenant, key_id, request_id, aggregate, event, provider, model, amount,
               input_tokens, output_tokens, cached_tokens, data
        FROM ledger_events FINAL WHERE {where.sql()}
        ORDER BY notification_id DESC LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}"""
    where.values.update(limit=p.limit, offset=p.offset)
    return _run(store, sql, where, "raw")


def request_events(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Every event of one request, in order (a tenant sees only its own requests)."""
    if p.request_id is None:
        raise QueryError("request_id", "request_id is required")
    where = Where()
    where.add("request_id = {request_id:String}", request_id=p.request_id)
    if scope.scoped:
        where.add("tenant = {scope_tenant:String}", scope_tenant=scope.tenant)
    sql = f"""
        SELECT version, time, event, provider, model, amount, input_tokens, output_tokens, cached_tokens, data
        FROM ledger_events FINAL WHERE {where.sql()} ORDER BY version"""
    return _run(store, sql, where, "raw")


def keys(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """The tenant's keys (id, prefix, label, revoked) with their all-time usage."""
    where = Where()
    if scope.scoped:
        where.add("tenant = {scope_tenant:String}", scope_tenant=scope.tenant)
    elif p.tenant is not None:
        where.add("tenant = {tenant:String}", tenant=p.tenant)
    sql = f"""
        SELECT k.tenant AS tenant, k.key_id AS key_id, k.prefix AS prefix, k.label AS label, k.revoked AS revoked,
               u.requests AS requests, u.cost AS cost
        FROM (SELECT tenant, key_id,
                     anyIf(JSONExtractString(data, 'prefix'), event = 'Issued') AS prefix,
                     anyIf(JSONExtractString(data, 'label'), event = 'Issued') AS label,
                     countIf(event = 'Revoked') > 0 AS revoked
              FROM ledger_events WHERE aggregate = 'ApiKey' AND {where.sql()} GROUP BY tenant, key_id) AS k
        LEFT JOIN (SELECT key_id, sum(requests) AS requests, sum(cost) AS cost FROM usage_daily
                   WHERE {where.sql()} GROUP BY key_id) AS u ON k.key_id = u.key_id
        ORDER BY tenant, cost DESC, prefix"""
    return _run(store, sql, where, "raw")


def tenants(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """Tenants with credits, all-time spend (as re-priced) and balance (the ledger's:
    credits + every adjustment - usage as metered; see `budget`) (admin)."""
    where = Where()
    if scope.scoped:
        where.add("tenant = {scope_tenant:String}", scope_tenant=scope.tenant)
    sql = f"""
        SELECT t.tenant AS tenant, t.credits AS credits, u.requests AS requests, u.cost AS spend,
               t.credits + t.adjustments - (u.cost - c.repriced) AS balance
        FROM (SELECT tenant, sumIf(amount, event = 'CreditsAdded') AS credits,
                     sumIf(amount, event = 'BalanceAdjusted') AS adjustments
              FROM ledger_events FINAL WHERE aggregate = 'Tenant' AND {where.sql()} GROUP BY tenant) AS t
        LEFT JOIN (SELECT tenant, sum(requests) AS requests, sum(cost) AS cost FROM usage_daily
                   WHERE {where.sql()} GROUP BY tenant) AS u ON t.tenant = u.tenant
        LEFT JOIN (SELECT tenant, sum(delta) AS repriced FROM cost_corrections FINAL
                   WHERE {where.sql()} GROUP BY tenant) AS c ON t.tenant = c.tenant
        ORDER BY spend DESC, tenant"""
    return _run(store, sql, where, "raw")


def facets(store: AnalyticsStore, p: Params, scope: Scope) -> Result:
    """The values the finance filters offer: event types, models, providers, keys."""
    where = filters(p, scope, dims=("tenant",))
    sql = f"""
        SELECT 'event' AS facet, toString(event) AS value FROM ledger_events WHERE {where.sql()} GROUP BY value
        UNION ALL SELECT 'model', toString(model) FROM ledger_events WHERE {where.sql()} AND model != '' GROUP BY 2
        UNION ALL SELECT 'provider', toString(provider) FROM ledger_events WHERE {where.sql()} AND provider != ''
            GROUP BY 2
        UNION ALL SELECT 'key_id', key_id FROM ledger_events WHERE {where.sql()} AND key_id != '' GROUP BY 2
        ORDER BY 1, 2"""
    return _run(store, sql, where, "raw")


@dataclass(frozen=True, slots=True)
class QuerySpec:
    run: Callable[[AnalyticsStore, Params, Scope], Result]
    tenant_visible: bool  # part of the tenant-facing /v1/analytics subset
    summary: str


CATALOGUE: dict[str, QuerySpec] = {
    "usage": QuerySpec(usage, True, "requests, errors, tokens and cost per time bucket, split by `by`"),
    "breakdown": QuerySpec(breakdown, True, "totals over the window by tenant, key, model or provider"),
    "top_spenders": QuerySpec(top_spenders, True, "who spent most: tenants (admin) or keys (tenant)"),
    "latency": QuerySpec(latency, True, "p50/p95/p99 of total latency and TTFT by provider and model"),
    "latency_over_time": QuerySpec(latency_over_time, True, "latency percentiles per time bucket"),
    "provider_health": QuerySpec(provider_health, False, "error, retry and fallback rates by provider"),
    "throughput": QuerySpec(throughput, True, "output tokens per second of generation"),
    "circuit_events": QuerySpec(circuit_events, False, "circuit breakers opened and closed"),
    "totals": QuerySpec(totals, True, "exact per-tenant totals (reconcile with the ledger)"),
    "budget": QuerySpec(budget, True, "credits, spend, balance, monthly cap and burn-down of one tenant"),
    "ledger": QuerySpec(ledger_lines, True, "ledger lines with filters (time, key, model, event)"),
    "request": QuerySpec(request_events, True, "every event of one request"),
    "keys": QuerySpec(keys, True, "API keys with their usage"),
    "tenants": QuerySpec(tenants, False, "tenants with credits, spend and balance"),
    "facets": QuerySpec(facets, True, "values for the filters: event types, models, providers, keys"),
}


def run(store: AnalyticsStore, name: str, raw: Mapping[str, str], scope: Scope,
        now: datetime | None = None) -> dict[str, Any]:
    """Run a catalogue query; the JSON-ready answer. Raises KeyError for an unknown
    name and QueryError for bad parameters."""
    spec = CATALOGUE[name]
    if scope.scoped and "tenant" in raw:
        raise QueryError("tenant", "the tenant is the one your key belongs to; do not pass `tenant`")
    params = Params.parse(raw, now)
    result = spec.run(store, params, scope)
    answer: dict[str, Any] = {
        "query": name, "source": result.source, "params": params.echo(),
        "columns": result.columns, "data": result.records(),
    }
    if result.summary is not None:
        answer["summary"] = result.summary
    return answer


# -- helpers ------------------------------------------------------------------------


def _run(store: AnalyticsStore, sql: str, where: Where, source: str) -> Result:
    columns, rows = store.query(sql, where.values)
    return Result(columns, rows, source)


def _percentiles(result: Result) -> Result:
    """Arrays of quantiles -> named columns (p50, p95, p99 and ttft_p50, ...)."""
    columns: list[str] = []
    for name in result.columns:
        if name == "latency":
            columns += ["p50_ms", "p95_ms", "p99_ms"]
        elif name == "ttft":
            columns += ["ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms"]
        else:
            columns.append(name)
    rows = []
    for row in result.rows:
        flat: list[Any] = []
        for name, value in zip(result.columns, row, strict=True):
            if name in ("latency", "ttft"):
                flat += [_finite(v) for v in (value or [None, None, None])]
            else:
                flat.append(value)
        rows.append(tuple(flat))
    return Result(columns, rows, result.source)


def _finite(value: Any) -> float | None:
    if value is None or value != value:  # NaN: no data in the bucket
        return None
    return round(float(value), 3)


def _one_tenant(p: Params, scope: Scope) -> str:
    if scope.scoped:
        assert scope.tenant is not None
        return scope.tenant
    if p.tenant is None:
        raise QueryError("tenant", "this query is about one tenant: pass `tenant`")
    return p.tenant


def _replace(p: Params, **changes: Any) -> Params:
    values = {name: getattr(p, name) for name in p.__dataclass_fields__}
    values.update(changes)
    return Params(**values)


def _time(text: str | None, name: str, now: datetime) -> datetime:
    assert text is not None
    text = text.strip()
    match = RELATIVE.match(text)
    if match:
        return now - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(name, f"{name} must be ISO 8601 (2026-01-31T12:00:00Z) or relative (15m, 24h, 7d)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _int(text: str | None, name: str, default: int, low: int, high: int | None = None) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise QueryError(name, f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        raise QueryError(name, f"{name} must be between {low} and {high}" if high else f"{name} must be >= {low}")
    return value


def _ch_time(value: datetime) -> str:
    """A datetime as ClickHouse reads a DateTime64(3, 'UTC') parameter."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
