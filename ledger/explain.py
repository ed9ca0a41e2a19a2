"""A request's story told from its events alone: `twoapi ledger explain REQUEST_ID`."""

from __future__ import annotations

from typing import Any


def explain(events: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for event in events:
        lines.extend(_EXPLAINERS.get(event["event"], _generic)(event))
    return "\n".join(lines)


def _received(e: dict[str, Any]) -> list[str]:
    mode = "streaming" if e["stream"] else "plain"
    return [
        f"{e['timestamp']}  received {e['endpoint']} ({mode}) for model '{e['model']}' "
        f"from tenant {e['tenant']}, key {e['key_id'][:12]}; {e['messages']} messages, {e['body_bytes']} bytes"
    ]


def _routed(e: dict[str, Any]) -> list[str]:
    lines = [f"routing: strategy {e['strategy']}; {e['reason']}"]
    options = e.get("options") or {}  # absent in events recorded before routing defaults
    if options:
        lines.append("  options: " + ", ".join(
            f"{name} {_option_value(o['value'])} (from {_FROM.get(o['from'], o['from'])})"
            for name, o in options.items()))
    lines.append("  candidates:")
    chain = e["chain"]
    for candidate in e["candidates"]:
        name = candidate["model"] or candidate["requested"]
        score = "" if candidate["score"] is None else f" score {candidate['score']}"
        if candidate["excluded"]:
            lines.append(f"    - {name}{score}: excluded ({candidate['excluded']})")
        else:
            lines.append(f"    {chain.index(name) + 1}. {name}{score}")
    return lines


_FROM = {"request": "the request", "key": "the key's defaults", "tenant": "the tenant's defaults",
         "config": "the gateway's configuration"}


def _option_value(value: Any) -> str:
    return (", ".join(value) or "none") if isinstance(value, list) else str(value)


def _attempt_started(e: dict[str, Any]) -> list[str]:
    return [f"attempt {e['attempt']}: {e['model']} ({e['provider']})"]


def _attempt_failed(e: dict[str, Any]) -> list[str]:
    status = f" HTTP {e['status']}" if e["status"] else ""
    then = "retryable" if e["retryable"] else "not retryable"
    return [f"  failed after {e['latency_ms']} ms: {e['error_code']}{status} ({then}) - {e['message']}"]


def _attempt_succeeded(e: dict[str, Any]) -> list[str]:
    ttft = f", first token at {e['ttft_ms']} ms" if e["ttft_ms"] is not None else ""
    return [f"  succeeded at {e['latency_ms']} ms{ttft}"]


def _retry(e: dict[str, Any]) -> list[str]:
    asked = f" (provider asked for {e['retry_after_ms']} ms)" if e["retry_after_ms"] is not None else ""
    return [f"  retrying {e['model']} after {e['delay_ms']} ms{asked}"]


def _circuit_opened(e: dict[str, Any]) -> list[str]:
    return [f"  circuit of {e['model']} opened: {e['reason']}"]


def _circuit_closed(e: dict[str, Any]) -> list[str]:
    return [f"  circuit of {e['model']} closed: {e['reason']}"]


def _stream(e: dict[str, Any]) -> list[str]:
    gone = "; the client disconnected" if e["client_disconnected"] else ""
    return [f"stream: {e['chunks']} chunks, {e['bytes']} bytes over {e['duration_ms']} ms, "
            f"finish reason {e['finish_reason']}{gone}"]


def _usage(e: dict[str, Any]) -> list[str]:
    images = f", {e['images']} images" if e.get("images") else ""
    return [f"usage ({e['source']}): {e['input_tokens']} input tokens ({e['cached_tokens']} cached), "
            f"{e['output_tokens']} output tokens{images} on {e['model']}; cost ${e['cost']} "
            f"(price book {e['price_book']})"]


def _completed(e: dict[str, Any]) -> list[str]:
    return [f"completed: HTTP {e['status']} after {e['latency_ms']} ms"]


def _failed(e: dict[str, Any]) -> list[str]:
    return [f"failed: HTTP {e['status']} {e['error_code']} after {e['latency_ms']} ms - {e['message']}"]


def _generic(e: dict[str, Any]) -> list[str]:
    fields = {k: v for k, v in e.items() if k not in ("event", "version", "timestamp")}
    return [f"{e['event']}: {fields}"]


_EXPLAINERS = {
    "Received": _received,
    "Routed": _routed,
    "AttemptStarted": _attempt_started,
    "AttemptFailed": _attempt_failed,
    "AttemptSucceeded": _attempt_succeeded,
    "RetryScheduled": _retry,
    "CircuitOpened": _circuit_opened,
    "CircuitClosed": _circuit_closed,
    "StreamSummarized": _stream,
    "UsageMetered": _usage,
    "Completed": _completed,
    "Failed": _failed,
}
