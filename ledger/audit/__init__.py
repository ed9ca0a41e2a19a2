"""Audit: reading the stored ledger as it is (scan), tamper evidence (seal), checks
of everything derived from it (verify) and billing exports (export)."""
