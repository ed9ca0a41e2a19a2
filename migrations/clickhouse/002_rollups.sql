-- Hourly rollups, filled by materialized views as rows arrive, so dashboard queries
-- over long windows read thousands of rows instead of tens of millions.
-- Counters and money are SimpleAggregateFunction(sum) (exact: Decimal(38,9) for money);
-- latency percentiles are t-digest quantile states, merged at query time.
-- The targets keep dedup tokens too, so a batch re-shipped after a crash is not
-- counted twice here either.

CREATE TABLE IF NOT EXISTS requests_hourly
(
    hour           DateTime('UTC'),
    tenant         LowCardinality(String),
    key_id         String,
    provider       LowCardinality(String),
    model          LowCardinality(String),
    first_provider LowCardinality(String),
    first_model    LowCardinality(String),
    requests       SimpleAggregateFunction(sum, UInt64),
    errors         SimpleAggregateFunction(sum, UInt64),
    retried        SimpleAggregateFunction(sum, UInt64),
    retries        SimpleAggregateFunction(sum, UInt64),
    fallbacks      SimpleAggregateFunction(sum, UInt64),
    streams        SimpleAggregateFunction(sum, UInt64),
    input_tokens   SimpleAggregateFunction(sum, UInt64),
    output_tokens  SimpleAggregateFunction(sum, UInt64),
    cached_tokens  SimpleAggregateFunction(sum, UInt64),
    cost           SimpleAggregateFunction(sum, Decimal(38, 9)),
    gen_tokens     SimpleAggregateFunction(sum, UInt64),
    generation_ms  SimpleAggregateFunction(sum, Float64),
    latency_q      AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    ttft_q         AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, hour, key_id, provider, model, first_provider, first_model)
SETTINGS non_replicated_deduplication_window = 10000;

-- Source columns are qualified (`r.`) because the aliases reuse their names.
CREATE MATERIALIZED VIEW IF NOT EXISTS requests_hourly_mv TO requests_hourly AS
SELECT
    toStartOfHour(r.time) AS hour,
    r.tenant AS tenant, r.key_id AS key_id, r.provider AS provider, r.model AS model,
    r.first_provider AS first_provider, r.first_model AS first_model,
    count() AS requests,
    countIf(r.status >= 400) AS errors,
    countIf(r.retries > 0) AS retried,
    sum(toUInt64(r.retries)) AS retries,
    countIf(r.fallback_used = 1) AS fallbacks,
    countIf(r.stream = 1) AS streams,
    sum(r.input_tokens) AS input_tokens,
    sum(r.output_tokens) AS output_tokens,
    sum(r.cached_tokens) AS cached_tokens,
    sum(r.cost) AS cost,
    sumIf(r.output_tokens, r.status < 400 AND r.generation_ms > 0) AS gen_tokens,
    sumIf(r.generation_ms, r.status < 400 AND r.generation_ms > 0) AS generation_ms,
    quantilesTDigestState(0.5, 0.95, 0.99)(r.latency_ms) AS latency_q,
    quantilesTDigestState(0.5, 0.95, 0.99)(r.ttft_ms) AS ttft_q
FROM requests AS r
GROUP BY hour, tenant, key_id, provider, model, first_provider, first_model;

CREATE TABLE IF NOT EXISTS attempts_hourly
(
    hour       DateTime('UTC'),
    provider   LowCardinality(String),
    model      LowCardinality(String),
    attempts   SimpleAggregateFunction(sum, UInt64),
    failures   SimpleAggregateFunction(sum, UInt64),
    retryable  SimpleAggregateFunction(sum, UInt64),
    latency_q  AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    ttft_q     AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (provider, model, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS attempts_hourly_mv TO attempts_hourly AS
SELECT
    toStartOfHour(a.time) AS hour,
    a.provider AS provider, a.model AS model,
    count() AS attempts,
    countIf(a.outcome = 'error') AS failures,
    countIf(a.outcome = 'error' AND a.retryable = 1) AS retryable,
    quantilesTDigestState(0.5, 0.95, 0.99)(a.latency_ms) AS latency_q,
    quantilesTDigestState(0.5, 0.95, 0.99)(a.ttft_ms) AS ttft_q
FROM attempts AS a
GROUP BY hour, provider, model;
