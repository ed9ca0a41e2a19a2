"""Every dashboard page rendered by headless Chromium (Debian's `chromium`) from a
real `twoapi dashboards` process reading the seeded gateway; each screenshot must
show its charts drawn. Screenshots go to $TWOAPI_SCREENSHOTS_DIR when set (to look
at), else to the test's temporary directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dashboards.screenshots import PAGES, capture
from tests.analytics.conftest import ADMIN_TOKEN
from tests.support import free_port

TWOAPI = str(Path(sys.executable).with_name("twoapi"))
TITLES = {"tenant": "Tenant", "providers": "Providers", "finance": "Finance audit", "repricing": "Re-pricing"}


def test_every_page_renders_with_charts_in_chromium(seeded, tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.fail("Chromium is required for the dashboard screenshots: apt-get install -y chromium")
    out = Path(os.environ.get("TWOAPI_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    port = free_port()
    env = {**os.environ, "TWOAPI_ADMIN_TOKEN": ADMIN_TOKEN}
    dashboards = subprocess.Popen([TWOAPI, "dashboards", "--port", str(port), "--gateway", seeded.gw.url], env=env,
                                  stdout=subprocess.DEVNULL, stderr=(tmp_path / "streamlit.err").open("wb"))
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        shots = asyncio.run(capture(url, out))
    finally:
        dashboards.terminate()
        dashboards.wait(15)
    assert [shot.page for shot in shots] == list(PAGES)
    for shot in shots:
        assert shot.title == TITLES[shot.page]
        assert shot.charts >= 1 and shot.drawn == shot.charts, shot  # charts, with marks drawn
        assert shot.path.stat().st_size > 30_000, shot  # a page, not a blank
