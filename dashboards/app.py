"""`twoapi dashboards`: the Streamlit app (streamlit run dashboards/app.py).

Every number comes from the gateway's Admin API (TWOAPI_GATEWAY_URL, with
TWOAPI_ADMIN_TOKEN): the dashboards never open a store, so they run anywhere the
gateway is reachable, and chDB stays in the one process that owns it."""

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="2api dashboards", page_icon=":material/monitoring:", layout="wide",
                   initial_sidebar_state="expanded")
VIEWS = HERE / "views"
pages = [
    st.Page(str(VIEWS / "tenant.py"), title="Tenant", icon=":material/apartment:", url_path="tenant", default=True),
    st.Page(str(VIEWS / "providers.py"), title="Providers", icon=":material/hub:", url_path="providers"),
    st.Page(str(VIEWS / "finance.py"), title="Finance audit", icon=":material/receipt_long:", url_path="finance"),
    st.Page(str(VIEWS / "repricing.py"), title="Re-pricing", icon=":material/sell:", url_path="repricing"),
]
st.navigation(pages).run()
