-- Routing defaults of tenants and keys (Tenant.RoutingSet, ApiKey.RoutingSet), as a
-- JSON object {"strategy", "fallbacks", "max_attempts", "timeout_ms", "max_cost"}
-- whose null members inherit; NULL: no defaults of its own (see docs/routing.md).
-- (SQLite has no ADD COLUMN IF NOT EXISTS: the runner applies this file once, under
-- the schema lock, and records it in schema_migrations in the same transaction.)

ALTER TABLE tenants ADD COLUMN routing TEXT;
ALTER TABLE api_keys ADD COLUMN routing TEXT;
