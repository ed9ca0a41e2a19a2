"""The ASGI entry point Hypercorn workers import: the app, configured from the environment."""

import gc

from gateway.app import create_app
from gateway.config import Settings

app = create_app(Settings.from_env())


@app.before_serving
async def _freeze_startup_objects() -> None:
    # After the app's own start-up (hooks run in order): what exists now (modules,
    # catalog, pools: ~100k objects) lives as long as the process, so keep it out of
    # the collector's full passes. Measured under load at 200 req/s: a full pass every
    # ~5 s, 20-360 ms each here with these objects in it; the open loop's p99.
    gc.collect()
    gc.freeze()
