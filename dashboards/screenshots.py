"""Screenshots of every dashboard page in headless Chromium (Debian's `chromium`).

    python -m dashboards.screenshots --url http://127.0.0.1:8501 --out shots/

Chromium is driven over the DevTools protocol (aiohttp's websocket client): open a
page, wait until Streamlit has finished running it and its charts have drawn, then
capture the full page. Each result says how many charts were drawn, so a test can
insist on charts with data rather than on a picture of a spinner.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

PAGES = ("tenant", "providers", "finance", "repricing")
WIDTH, TALL = 1500, 2400
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--remote-debugging-port=0", "--window-size=1500,2400")
# True once the script run is over: no skeletons, no "running" widget, and either a
# chart with marks drawn or an alert saying why there is none.
READY_JS = """
(() => {
  const doc = document;
  if (!doc.querySelector('[data-testid="stAppViewContainer"]')) return null;
  if (doc.querySelector('[data-testid="stSkeleton"]')) return null;
  if (doc.querySelector('[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]')) return null;
  const charts = doc.querySelectorAll('[data-testid="stVegaLiteChart"]');
  const drawn = [...charts].filter(c => c.querySelector('canvas, svg .mark-group, svg path, svg rect')).length;
  const alerts = doc.querySelectorAll('[data-testid="stAlert"]').length;
  const tables = doc.querySelectorAll('[data-testid="stDataFrame"]').length;
  const main = doc.querySelector('[data-testid="stMain"]') || doc.body;
  return {charts: charts.length, drawn, alerts, tables, height: Math.ceil(main.scrollHeight) + 80,
          title: (doc.querySelector('h1') || {}).textContent || ''};
})()
"""

@dataclass(frozen=True, slots=True)
class Shot:
    page: str
    path: Path
    charts: int
    drawn: int
    tables: int
    alerts: int
    title: str


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no chromium: apt-get install -y chromium")


async def capture(base_url: str, out: Path, pages: tuple[str, ...] = PAGES, settle_s: float = 1.0,
                  timeout_s: float = 60.0) -> list[Shot]:
    out.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="twoapi-chromium-"))
    browser = subprocess.Popen([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile, timeout_s)
        async with aiohttp.ClientSession() as http:
            targets = await (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
            page_target = next(t for t in targets if t.get("type") == "page")
            async with http.ws_connect(page_target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = _Cdp(ws)
                await cdp.call("Page.enable")
                shots = []
                for name in pages:
                    path = "" if name == PAGES[0] else name  # the default page lives at the root
                    shots.append(await _shoot(cdp, f"{base_url.rstrip('/')}/{path}", name, out, settle_s, timeout_s))
                return shots
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


async def _shoot(cdp: _Cdp, url: str, name: str, out: Path, settle_s: float, timeout_s: float) -> Shot:
    # A tall viewport from the start: resizing after the page has drawn makes
    # Streamlit animate its sidebar, which the capture would catch half-way.
    await cdp.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=TALL, deviceScaleFactor=1, mobile=False)
    await cdp.call("Page.navigate", url=url)
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] | None = None
    stable_since: float | None = None
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        result = await cdp.call("Runtime.evaluate", expression=READY_JS, returnByValue=True)
        current = result.get("result", {}).get("value")
        if current and (current["drawn"] == current["charts"]) and (current["charts"] or current["alerts"]
                                                                     or current["tables"]):
            if current == state and stable_since is not None and time.monotonic() - stable_since >= settle_s:
                break
            if current != state:
                stable_since = time.monotonic()
        else:
            stable_since = None
        state = current
    if not state:
        raise TimeoutError(f"{url} did not render within {timeout_s} s")
    clip = {"x": 0, "y": 0, "width": WIDTH, "height": max(900, state["height"]), "scale": 1}
    image = await cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
    path = out / f"{name}.png"
    path.write_bytes(base64.b64decode(image["data"]))
    return Shot(name, path, state["charts"], state["drawn"], state["tables"], state["alerts"], state["title"])


class _Cdp:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        async for message in self.ws:
            data = message.json()
            if data.get("id") == call_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
        raise RuntimeError("chromium closed the DevTools connection")


def _devtools_port(profile: Path, timeout_s: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8501", help="where `twoapi dashboards` serves")
    parser.add_argument("--out", type=Path, default=Path("dashboard-screenshots"))
    args = parser.parse_args()
    for shot in asyncio.run(capture(args.url, args.out)):
        print(f"{shot.page:10} {shot.path}  charts drawn: {shot.drawn}/{shot.charts}, tables: {shot.tables}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
