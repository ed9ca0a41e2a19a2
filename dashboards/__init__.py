"""The Streamlit dashboards (`twoapi dashboards`). They read only the gateway's HTTP
API (the admin analytics routes), never a store: see docs/analytics.md."""
