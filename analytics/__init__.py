"""ClickHouse read model: the projection that ships ledger events into ClickHouse, and
the analytical queries the API and the dashboards use. See docs/analytics.md."""
