-- Measured at 10M rows (bench/analytics_queries.py): t-digest states keyed also by
-- the provider first tried doubled the rows the latency queries merge, and 30-day
-- money questions read ~2M hourly rows where ~90k daily rows hold the same sums. So:
--  * provider_hourly keeps the sums only (rates, fallbacks by first provider, throughput);
--  * latency_hourly holds the quantile states, by provider and model;
--  * usage_daily holds the money and token sums by day (whole days of a window are
--    read from it, the partial days at its edges from usage_hourly).
-- Each new table is backfilled from `requests` when created empty.

DROP VIEW IF EXISTS provider_hourly_mv;
DROP TABLE IF EXISTS provider_hourly;

CREATE TABLE IF NOT EXISTS provider_hourly
(
    hour           DateTime('UTC'),
    provider       LowCardinality(String),
    model          LowCardinality(String),
    first_provider LowCardinality(String),
    requests       SimpleAggregateFunction(sum, UInt64),
    errors         SimpleAggregateFunction(sum, UInt64),
    retried        SimpleAggregateFunction(sum, UInt64),
    fallbacks      SimpleAggregateFunction(sum, UInt64),
    streams        SimpleAggregateFunction(sum, UInt64),
    gen_tokens     SimpleAggregateFunction(sum, UInt64),
    generation_ms  SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (provider, model, first_provider, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS provider_hourly_mv TO provider_hourly AS
SELECT
    toStartOfHour(r.time) AS hour, r.provider AS provider, r.model AS model, r.first_provider AS first_provider,
    count() AS requests,
    countIf(r.status >= 400) AS errors,
    countIf(r.retries > 0) AS retried,
    countIf(r.fallback_used = 1) AS fallbacks,
    countIf(r.stream = 1) AS streams,
    sumIf(r.output_tokens, r.status < 400 AND r.generation_ms > 0) AS gen_tokens,
    sumIf(r.generation_ms, r.status < 400 AND r.generation_ms > 0) AS generation_ms
FROM requests AS r
GROUP BY hour, provider, model, first_provider;

INSERT INTO provider_hourly
SELECT toStartOfHour(time) AS hour, provider, model, first_provider, count(), countIf(status >= 400),
       countIf(retries > 0), countIf(fallback_used = 1), countIf(stream = 1),
       sumIf(output_tokens, status < 400 AND generation_ms > 0), sumIf(generation_ms, status < 400 AND generation_ms > 0)
FROM requests FINAL
WHERE (SELECT count() FROM provider_hourly) = 0
GROUP BY hour, provider, model, first_provider;

CREATE TABLE IF NOT EXISTS latency_hourly
(
    hour      DateTime('UTC'),
    provider  LowCardinality(String),
    model     LowCardinality(String),
    requests  SimpleAggregateFunction(sum, UInt64),
    latency_q AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    ttft_q    AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (provider, model, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS latency_hourly_mv TO latency_hourly AS
SELECT
    toStartOfHour(r.time) AS hour, r.provider AS provider, r.model AS model,
    count() AS requests,
    quantilesTDigestState(0.5, 0.95, 0.99)(r.latency_ms) AS latency_q,
    quantilesTDigestState(0.5, 0.95, 0.99)(r.ttft_ms) AS ttft_q
FROM requests AS r
GROUP BY hour, provider, model;

INSERT INTO latency_hourly
SELECT toStartOfHour(time) AS hour, provider, model, count(),
       quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms), quantilesTDigestState(0.5, 0.95, 0.99)(ttft_ms)
FROM requests FINAL
WHERE (SELECT count() FROM latency_hourly) = 0
GROUP BY hour, provider, model;

CREATE TABLE IF NOT EXISTS usage_daily
(
    day           Date,
    tenant        LowCardinality(String),
    key_id        String,
    provider      LowCardinality(String),
    model         LowCardinality(String),
    requests      SimpleAggregateFunction(sum, UInt64),
    errors        SimpleAggregateFunction(sum, UInt64),
    input_tokens  SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cached_tokens SimpleAggregateFunction(sum, UInt64),
    cost          SimpleAggregateFunction(sum, Decimal(38, 9))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, day, key_id, provider, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
SELECT
    toDate(r.time) AS day, r.tenant AS tenant, r.key_id AS key_id, r.provider AS provider, r.model AS model,
    count() AS requests,
    countIf(r.status >= 400) AS errors,
    sum(r.input_tokens) AS input_tokens,
    sum(r.output_tokens) AS output_tokens,
    sum(r.cached_tokens) AS cached_tokens,
    sum(r.cost) AS cost
FROM requests AS r
GROUP BY day, tenant, key_id, provider, model;

INSERT INTO usage_daily
SELECT toDate(time) AS day, tenant, key_id, provider, model, count(), countIf(status >= 400),
       sum(input_tokens), sum(output_tokens), sum(cached_tokens), sum(cost)
FROM requests FINAL
WHERE (SELECT count() FROM usage_daily) = 0
GROUP BY day, tenant, key_id, provider, model;
