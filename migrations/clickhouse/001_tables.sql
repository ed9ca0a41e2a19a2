-- The analytics read model: rows shipped from the ledger by analytics/projection.py.
--
-- Every table the projection writes is idempotent twice over:
--  * inserts carry an `insert_deduplication_token` derived from the batch's ledger
--    range, and `non_replicated_deduplication_window` keeps those tokens, so a batch
--    shipped again after a crash is dropped by ClickHouse, materialized views
--    included (their target tables keep tokens too);
--  * the engines are ReplacingMergeTree keyed on the ledger's event ids, so even a
--    re-ship that escaped the window collapses on merge (and in FINAL queries).
-- Money is Decimal(18,9): the ledger's 1e-9 USD quantum, summed exactly.

CREATE TABLE IF NOT EXISTS requests
(
    request_id      String,                   -- req_<hex>, the Request aggregate
    time            DateTime64(3, 'UTC'),     -- when the gateway received it
    tenant          LowCardinality(String),
    key_id          String,
    endpoint        LowCardinality(String),
    requested_model LowCardinality(String),   -- as the client asked (may be an alias or "auto")
    provider        LowCardinality(String),   -- who served (or last tried)
    model           LowCardinality(String),
    first_provider  LowCardinality(String),   -- who was tried first: fallbacks are away from it
    first_model     LowCardinality(String),
    strategy        LowCardinality(String),
    status          UInt16,
    error_code      LowCardinality(String),   -- '' when it succeeded
    attempts        UInt8,
    retries         UInt8,
    fallback_used   UInt8,                    -- 1 when more than one model was tried
    stream          UInt8,
    ttft_ms         Nullable(Float64),
    latency_ms      Float64,
    generation_ms   Float64,                  -- latency after the first token: tokens/s denominator
    input_tokens    UInt64,
    output_tokens   UInt64,
    cached_tokens   UInt64,
    usage_source    LowCardinality(String),   -- provider | estimated | '' (nothing metered)
    cost            Decimal(18, 9),
    price_book      LowCardinality(String),
    notification_id UInt64                    -- of the request's last event: the replacing version
)
ENGINE = ReplacingMergeTree(notification_id)
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, time, request_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS attempts
(
    request_id      String,
    attempt         UInt8,
    time            DateTime64(3, 'UTC'),
    tenant          LowCardinality(String),
    key_id          String,
    provider        LowCardinality(String),
    model           LowCardinality(String),
    outcome         LowCardinality(String),   -- ok | error | unfinished
    status          UInt16,
    error_code      LowCardinality(String),
    retryable       UInt8,
    ttft_ms         Nullable(Float64),
    latency_ms      Float64,
    notification_id UInt64
)
ENGINE = ReplacingMergeTree(notification_id)
PARTITION BY toYYYYMM(time)
ORDER BY (provider, model, time, request_id, attempt)
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per ledger event, of every aggregate: the finance audit's ledger lines.
CREATE TABLE IF NOT EXISTS ledger_events
(
    notification_id UInt64,
    originator_id   UUID,
    version         UInt32,
    time            DateTime64(6, 'UTC'),
    aggregate       LowCardinality(String),   -- Request, Tenant, ApiKey, ...
    event           LowCardinality(String),   -- Received, UsageMetered, CreditsAdded, ...
    tenant          LowCardinality(String),
    key_id          String,
    request_id      String,                   -- '' for events of other aggregates
    provider        LowCardinality(String),
    model           LowCardinality(String),
    amount          Decimal(18, 9),           -- UsageMetered cost; CreditsAdded, BalanceAdjusted (signed); else 0
    input_tokens    UInt64,
    output_tokens   UInt64,
    cached_tokens   UInt64,
    data            String                    -- the event's fields as JSON (hashes and sizes, never text)
)
ENGINE = ReplacingMergeTree(notification_id)
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, time, originator_id, version)
SETTINGS non_replicated_deduplication_window = 10000;

-- Where each projection stands in the ledger: the last notification it shipped.
-- (A batch in flight when a run stopped is found in ledger_events, above it.)
CREATE TABLE IF NOT EXISTS projection_state
(
    name     String,
    position UInt64,
    updated  DateTime64(3, 'UTC'),
    version  UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY name;
