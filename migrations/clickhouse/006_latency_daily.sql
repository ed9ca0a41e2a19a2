-- The 30-day latency percentiles merged ~8,700 hourly t-digest states (twice: latency
-- and TTFT) at 10M requests: 180-270 ms, the one dashboard panel near its 200 ms budget
-- (bench/analytics_queries.py). As for money (usage_daily), whole days of a window now
-- come from a daily rollup of the same states and only the hours at its edges from
-- latency_hourly (analytics/queries.py, `latency`). Backfilled from `requests` when
-- created empty.

CREATE TABLE IF NOT EXISTS latency_daily
(
    day       Date,
    provider  LowCardinality(String),
    model     LowCardinality(String),
    requests  SimpleAggregateFunction(sum, UInt64),
    latency_q AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    ttft_q    AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (provider, model, day)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS latency_daily_mv TO latency_daily AS
SELECT
    toDate(r.time) AS day, r.provider AS provider, r.model AS model,
    count() AS requests,
    quantilesTDigestState(0.5, 0.95, 0.99)(r.latency_ms) AS latency_q,
    quantilesTDigestState(0.5, 0.95, 0.99)(r.ttft_ms) AS ttft_q
FROM requests AS r
GROUP BY day, provider, model;

INSERT INTO latency_daily
SELECT toDate(time) AS day, provider, model, count(),
       quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms), quantilesTDigestState(0.5, 0.95, 0.99)(ttft_ms)
FROM requests FINAL
WHERE (SELECT count() FROM latency_daily) = 0
GROUP BY day, provider, model;
