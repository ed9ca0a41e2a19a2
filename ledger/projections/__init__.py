"""Projections of the ledger into SQL: tenants, keys, accounts and entries, usage.

See tenancy.py (what each event changes), views.py (the tables and the exactly-once
batch commit) and runner.py (running, leasing, status and rebuild)."""
