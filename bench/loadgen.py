"""Load generators.

- `run_wrk`: closed-loop throughput and latency with wrk (C, one thread, pinned), the
  POST body set from a Lua script whose `done` hook prints one JSON line.
- the aiohttp generator (`python -m bench.loadgen ...`, run as its own pinned
  process by `run_aio`): streams with time to first token, and open-loop load at a
  fixed rate, where latency counts from each request's *scheduled* start so a
  stalled server cannot hide its queueing (no coordinated omission).

Every generator returns a dict: requests, errors, duration_s, rps, latency_ms
{p50, p90, p99, p999, max, mean}, and for streams ttft_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import pinned
from bench.stats import summary_ms

WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
"""


def ensure_wrk() -> str | None:
    """The wrk binary; installed with apt-get when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    import os

    if os.environ.get("BENCH_INSTALL_WRK", "1") != "0" and os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (apt-get install -y wrk)", file=sys.stderr, flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = shutil.which("wrk")
        if not found:
            subprocess.run(["apt-get", "update", "-qq"], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            found = shutil.which("wrk")
    return found


def _lua_string(text: str) -> str:
    """A double-quoted Lua string literal (decimal escapes for anything unusual)."""
    out = []
    for ch in text.encode():
        if ch in (0x22, 0x5C) or ch < 0x20 or ch > 0x7E:
            out.append(f"\\{ch:03d}")
        else:
            out.append(chr(ch))
    return '"' + "".join(out) + '"'


def wrk_script(body: bytes, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
    for name, value in headers.items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    return "\n".join(lines) + "\n" + WRK_DONE


def run_wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    connections: int,
    duration_s: float,
    cpus: str | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    wrk = ensure_wrk()
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(body, headers))
    try:
        cmd = pinned(
            [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", f"--timeout={int(timeout_s)}s",
             "-s", script.name, url],
            cpus,
        )
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    finally:
        Path(script.name).unlink(missing_ok=True)
    match = re.search(r"^WRKJSON (.*)$", done.stdout, re.M)
    if match is None:
        raise RuntimeError(f"wrk gave no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(match.group(1))
    duration = raw["duration_us"] / 1e6
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    ok = raw["requests"] - raw["status"]
    return {
        "tool": "wrk",
        "connections": connections,
        "requests": raw["requests"],
        "ok": ok,
        "errors": errors,
        "error_kinds": {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]},
        "duration_s": round(duration, 3),
        "rps": round(ok / duration, 1) if duration else 0.0,
        "latency_ms": {k: round(raw[k] / 1000, 3) for k in ("p50", "p90", "p99", "p999", "max")}
        | {"mean": round(raw["mean"] / 1000, 3)},
    }


# -------------------------------------------------------------- the aiohttp generator

_CONTENT = re.compile(rb'"content":\s*"[^"]')


async def _one(session: Any, url: str, body: bytes, headers: dict[str, str], stream: bool,
               t0: float) -> tuple[bool, float | None, float]:
    """One request: (ok, ttft seconds or None, total seconds), timed from t0."""
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if not stream:
                await resp.read()
                return resp.status == 200, None, time.perf_counter() - t0
            ttft = None
            tail = b""
            async for chunk in resp.content.iter_any():
                if ttft is None and _CONTENT.search(tail + chunk):
                    ttft = time.perf_counter() - t0
                tail = (tail + chunk)[-64:]
            total = time.perf_counter() - t0
            return resp.status == 200 and b"[DONE]" in tail, ttft, total
    except Exception:
        return False, None, time.perf_counter() - t0


def _session(limit: int) -> Any:
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=False),
        timeout=aiohttp.ClientTimeout(total=30),
        skip_auto_headers=("User-Agent",),
    )


async def closed_loop(url: str, body: bytes, headers: dict[str, str], stream: bool, concurrency: int,
                      duration_s: float) -> dict[str, Any]:
    totals: list[float] = []
    ttfts: list[float] = []
    errors = 0
    async with _session(concurrency) as session:
        end = time.perf_counter() + duration_s
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                ok, ttft, total = await _one(session, url, body, headers, stream, time.perf_counter())
                if ok:
                    totals.append(total)
                    if ttft is not None:
                        ttfts.append(ttft)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return _result("aiohttp-closed", len(totals), errors, elapsed, totals, ttfts, concurrency=concurrency)


async def open_loop(url: str, body: bytes, headers: dict[str, str], stream: bool, rate: float,
                    duration_s: float, max_in_flight: int = 4000, alt_body: bytes | None = None,
                    window_s: float = 0.0) -> dict[str, Any]:
    """Send at a fixed rate whatever the answers do; latency from the scheduled time.

    With `alt_body` (a streaming request), every other request sends it instead. With
    `window_s`, the result also has p50/p99 per window of scheduled time (`windows`).
    """
    totals: list[float] = []
    ttfts: list[float] = []
    by_window: dict[int, list[float]] = {}
    window_errors: dict[int, int] = {}
    errors = 0
    dropped = 0
    in_flight: set[asyncio.Task] = set()
    async with _session(0) as session:
        interval = 1.0 / rate
        count = int(rate * duration_s)
        started = time.perf_counter()

        async def fire(scheduled: float, payload: bytes, streaming: bool) -> None:
            nonlocal errors
            ok, ttft, total = await _one(session, url, payload, headers, streaming, scheduled)
            window = int((scheduled - started) / window_s) if window_s else 0
            if ok:
                totals.append(total)
                if window_s:
                    by_window.setdefault(window, []).append(total)
                if ttft is not None:
                    ttfts.append(ttft)
            else:
                errors += 1
                window_errors[window] = window_errors.get(window, 0) + 1

        for i in range(count):
            scheduled = started + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= max_in_flight:
                dropped += 1  # the server is hopelessly behind; count, do not pile on
                continue
            alt = alt_body is not None and i % 2 == 1
            task = asyncio.create_task(fire(scheduled, alt_body if alt else body, True if alt else stream))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)
        elapsed = time.perf_counter() - started
        late = time.perf_counter() - (started + count * interval)
    result = _result("aiohttp-open", len(totals), errors + dropped, elapsed, totals, ttfts, rate=rate)
    result["dropped"] = dropped
    result["send_lag_s"] = round(late, 3)
    if window_s:
        windows = []
        for index in sorted(set(by_window) | set(window_errors)):
            stats = summary_ms(by_window.get(index, []))
            windows.append({"t_s": round(index * window_s, 1), "ok": len(by_window.get(index, [])),
                            "errors": window_errors.get(index, 0), "p50_ms": stats["p50"], "p99_ms": stats["p99"],
                            "max_ms": stats["max"]})
        result["windows"] = windows
    return result


def _result(tool: str, ok: int, errors: int, elapsed: float, totals: list[float], ttfts: list[float],
            **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tool": tool,
        **extra,
        "requests": ok + errors,
        "ok": ok,
        "errors": errors,
        "duration_s": round(elapsed, 3),
        "rps": round(ok / elapsed, 1) if elapsed else 0.0,
        "latency_ms": summary_ms(totals),
    }
    if ttfts:
        out["ttft_ms"] = summary_ms(ttfts)
    return out


def run_aio(
    mode: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    stream: bool,
    duration_s: float,
    concurrency: int = 1,
    rate: float = 0.0,
    cpus: str | None = None,
) -> dict[str, Any]:
    """Run the aiohttp generator in its own (pinned) process and return its result."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as spec:
        spec.write(json.dumps({"url": url, "body": body.decode(), "headers": headers}).encode())
    try:
        cmd = [sys.executable, "-m", "bench.loadgen", mode, spec.name, "--duration", str(duration_s),
               "--concurrency", str(concurrency), "--rate", str(rate)] + (["--stream"] if stream else [])
        done = subprocess.run(pinned(cmd, cpus), capture_output=True, text=True, timeout=duration_s + 90,
                              cwd=str(Path(__file__).resolve().parent.parent))
    finally:
        Path(spec.name).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("mode", choices=["closed", "open"])
    parser.add_argument("spec", help="JSON file: url, body, headers")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--window", type=float, default=0.0, help="open: per-window stats every N seconds")
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    body = spec["body"].encode()
    if args.mode == "closed":
        coro = closed_loop(spec["url"], body, spec["headers"], args.stream, args.concurrency, args.duration)
    else:
        alt = spec.get("alt_body")
        coro = open_loop(spec["url"], body, spec["headers"], args.stream, args.rate, args.duration,
                         alt_body=alt.encode() if alt else None, window_s=args.window)
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(coro)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
