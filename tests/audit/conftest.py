"""Audit tests run against gateways with the Admin API, on SQLite and PostgreSQL."""

from tests.tenancy.conftest import admin, gw, ledger_and_view, make_gateway, redis_prefix  # noqa: F401
