-- Routing defaults of tenants and keys (Tenant.RoutingSet, ApiKey.RoutingSet), as a
-- JSON object {"strategy", "fallbacks", "max_attempts", "timeout_ms", "max_cost"}
-- whose null members inherit; NULL: no defaults of its own (see docs/routing.md).

ALTER TABLE tenants ADD COLUMN IF NOT EXISTS routing TEXT;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS routing TEXT;
