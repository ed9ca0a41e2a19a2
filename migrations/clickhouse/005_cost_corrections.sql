-- Re-pricing (RepricingRun.UsageRepriced, ledger/repricing.py) corrects the cost of
-- earlier UsageMetered events. Ledger events are never updated, and neither are the
-- rows shipped from them: a correction is a row of its own, one per corrected usage
-- event, carrying the difference (after - before). It sits in the time bucket of the
-- request whose usage it corrects, with that request row's tenant, key, provider and
-- model, so that every cost figure is the original cost plus the corrections:
--  * the raw-row queries add `cost_corrections` to `requests` (analytics/queries.py);
--  * the usage rollups receive the difference through the views below (money only:
--    requests, errors and tokens do not change when a price does).
-- Idempotent like the other tables: inserts carry the batch's dedup token (the views'
-- targets keep tokens too), and the engine replaces on (run, usage event).

CREATE TABLE IF NOT EXISTS cost_corrections
(
    time            DateTime64(3, 'UTC'),     -- the corrected request's time (its row's bucket)
    tenant          LowCardinality(String),
    key_id          String,
    provider        LowCardinality(String),
    model           LowCardinality(String),
    request_id      String,                   -- req_<hex>
    usage_event     String,                   -- the UsageMetered corrected: "<request uuid>/<version>"
    run_id          String,                   -- the re-pricing run
    price_book      LowCardinality(String),   -- the version the usage was re-priced with
    cost_before     Decimal(18, 9),
    cost_after      Decimal(18, 9),
    delta           Decimal(18, 9),           -- cost_after - cost_before
    notification_id UInt64                    -- of the UsageRepriced event
)
ENGINE = ReplacingMergeTree(notification_id)
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, time, request_id, usage_event, run_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_corrections_mv TO usage_hourly AS
SELECT
    toStartOfHour(c.time) AS hour, c.tenant AS tenant, c.key_id AS key_id, c.provider AS provider,
    c.model AS model,
    toUInt64(0) AS requests, toUInt64(0) AS errors, toUInt64(0) AS input_tokens, toUInt64(0) AS output_tokens,
    toUInt64(0) AS cached_tokens,
    sum(c.delta) AS cost
FROM cost_corrections AS c
GROUP BY hour, tenant, key_id, provider, model;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_corrections_mv TO usage_daily AS
SELECT
    toDate(c.time) AS day, c.tenant AS tenant, c.key_id AS key_id, c.provider AS provider, c.model AS model,
    toUInt64(0) AS requests, toUInt64(0) AS errors, toUInt64(0) AS input_tokens, toUInt64(0) AS output_tokens,
    toUInt64(0) AS cached_tokens,
    sum(c.delta) AS cost
FROM cost_corrections AS c
GROUP BY day, tenant, key_id, provider, model;
