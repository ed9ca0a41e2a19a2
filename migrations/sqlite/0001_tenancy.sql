-- Projection tables of tenants, keys, money and usage (SQLite).
-- Every row is derived from ledger events by ledger/projections; the position of
-- the last applied event is in the library's tracking table (tracking).
-- SQLite has no exact decimal type, so money is TEXT holding Decimal strings (quantum
-- 1e-9 USD) and all arithmetic on it is done in Python with Decimal, never REAL.
-- Times are ISO 8601 UTC text.

CREATE TABLE IF NOT EXISTS tenants (
    name            TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL DEFAULT 'active',   -- active | suspended
    status_reason   TEXT NOT NULL DEFAULT '',
    rpm             INTEGER,
    tpm             INTEGER,
    monthly_cap     TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS accounts (
    account         TEXT PRIMARY KEY,                  -- tenant:<name> or system:<what>
    tenant          TEXT,                              -- NULL for system accounts
    balance         TEXT NOT NULL DEFAULT '0', -- the sum of the account's entries
    entries         INTEGER NOT NULL DEFAULT 0,
    last_event_at   TEXT,                       -- latest event time applied to it
    position        INTEGER NOT NULL DEFAULT 0          -- notification id of that event
);

CREATE TABLE IF NOT EXISTS entries (
    entry_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL,                     -- <aggregate id>/<version>
    position        INTEGER NOT NULL,                   -- the event's notification id
    account         TEXT NOT NULL,
    tenant          TEXT,
    amount          TEXT NOT NULL,           -- signed; each event's entries sum to 0
    kind            TEXT NOT NULL,                     -- credit | usage | adjustment
    reference       TEXT NOT NULL DEFAULT '',
    at              TEXT NOT NULL,
    UNIQUE (event_id, account)
);
CREATE INDEX IF NOT EXISTS entries_tenant_at ON entries (tenant, at);

CREATE TABLE IF NOT EXISTS api_keys (
    key_id          TEXT PRIMARY KEY,
    key_hash        TEXT NOT NULL UNIQUE,
    tenant          TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    label           TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'active',    -- active | revoked
    rpm             INTEGER,
    tpm             INTEGER,
    allowed_models  TEXT,                              -- JSON list, NULL: every model
    created_at      TEXT NOT NULL,
    revoked_at      TEXT,
    last_used_at    TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant);

CREATE TABLE IF NOT EXISTS request_tenants (
    request_id      TEXT PRIMARY KEY,                  -- the Request aggregate id (hex)
    tenant          TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    received_at     TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS usage_daily (
    tenant          TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    model           TEXT NOT NULL,
    day             TEXT NOT NULL,                     -- YYYY-MM-DD, UTC
    requests        INTEGER NOT NULL DEFAULT 0,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    cached_tokens   INTEGER NOT NULL DEFAULT 0,
    estimated       INTEGER NOT NULL DEFAULT 0,         -- requests metered by estimate
    cost            TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (tenant, day, key_id, model)
);

CREATE TABLE IF NOT EXISTS spend_monthly (
    tenant          TEXT NOT NULL,
    month           TEXT NOT NULL,                     -- YYYY-MM, UTC
    cost            TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (tenant, month)
);

CREATE TABLE IF NOT EXISTS provider_credentials (
    credential_id   TEXT NOT NULL UNIQUE,              -- the ProviderCredential aggregate id
    tenant          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    ciphertext      TEXT NOT NULL,                     -- AES-GCM under TWOAPI_MASTER_KEY
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (tenant, provider)
);
