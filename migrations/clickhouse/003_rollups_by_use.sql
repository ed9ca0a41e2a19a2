-- Rollups shaped by what reads them (measured at 10M rows: one rollup keyed by tenant,
-- key, provider and model, with quantile states in every row, reduced 10M rows to
-- ~2M and merged t-digests slower than the raw rows were read). So:
--  * usage_hourly: money and tokens by tenant, key, provider, model: cheap sums only;
--  * provider_hourly: latency and TTFT quantile states, rates and throughput by
--    provider and model (and the provider first tried, for fallback rates): a few
--    thousand rows a month, whoever the tenants are.
-- requests_hourly (002) is replaced by the two. Both are backfilled from `requests`
-- when created empty, so a store that had rows keeps its history.

DROP VIEW IF EXISTS requests_hourly_mv;
DROP TABLE IF EXISTS requests_hourly;

CREATE TABLE IF NOT EXISTS usage_hourly
(
    hour          DateTime('UTC'),
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
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, hour, key_id, provider, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT
    toStartOfHour(r.time) AS hour, r.tenant AS tenant, r.key_id AS key_id, r.provider AS provider,
    r.model AS model,
    count() AS requests,
    countIf(r.status >= 400) AS errors,
    sum(r.input_tokens) AS input_tokens,
    sum(r.output_tokens) AS output_tokens,
    sum(r.cached_tokens) AS cached_tokens,
    sum(r.cost) AS cost
FROM requests AS r
GROUP BY hour, tenant, key_id, provider, model;

INSERT INTO usage_hourly
SELECT toStartOfHour(time) AS hour, tenant, key_id, provider, model, count(), countIf(status >= 400),
       sum(input_tokens), sum(output_tokens), sum(cached_tokens), sum(cost)
FROM requests FINAL
WHERE (SELECT count() FROM usage_hourly) = 0
GROUP BY hour, tenant, key_id, provider, model;

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
    generation_ms  SimpleAggregateFunction(sum, Float64),
    latency_q      AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    ttft_q         AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Nullable(Float64))
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
    sumIf(r.generation_ms, r.status < 400 AND r.generation_ms > 0) AS generation_ms,
    quantilesTDigestState(0.5, 0.95, 0.99)(r.latency_ms) AS latency_q,
    quantilesTDigestState(0.5, 0.95, 0.99)(r.ttft_ms) AS ttft_q
FROM requests AS r
GROUP BY hour, provider, model, first_provider;

INSERT INTO provider_hourly
SELECT toStartOfHour(time) AS hour, provider, model, first_provider, count(), countIf(status >= 400),
       countIf(retries > 0), countIf(fallback_used = 1), countIf(stream = 1),
       sumIf(output_tokens, status < 400 AND generation_ms > 0), sumIf(generation_ms, status < 400 AND generation_ms > 0),
       quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms), quantilesTDigestState(0.5, 0.95, 0.99)(ttft_ms)
FROM requests FINAL
WHERE (SELECT count() FROM provider_hourly) = 0
GROUP BY hour, provider, model, first_provider;
