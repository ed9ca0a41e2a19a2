"""The simulator's mutable state (faults, latency, request log, prompt cache) and the
`/_sim/*` control endpoints that steer it.

Faults (`POST /_sim/faults`): each names a provider, optionally a model (exact match on
the model the request names; omitted = every model) and optionally `stream` (true or
false = only streaming or only plain requests). The first active fault that matches a
generation request is applied and its `count` consumed (omitted = until cleared).
`after_chunks` (default 0) counts SSE events already sent on a stream:

- `status`: answer `status` in the provider's error shape (`retry-after` header from
  `retry_after`; a 429 gets `retry-after: 1` unless `retry_after` is given, null =
  none). On a stream with `after_chunks` > 0 the stream starts normally and the error
  arrives as the provider's in-stream error event after that many events.
- `timeout`: accept the request and never answer (a stream with `after_chunks` > 0
  stalls after that many events) until the client goes away.
- `disconnect`: close the connection abruptly: before any response byte, or on a
  stream after `after_chunks` events.
- `malformed`: a 200 whose body is not valid JSON; on a stream, event number
  `after_chunks` (0 = the first) is a data line that is not valid JSON, then the
  stream ends.
- `content_filter`: the provider's safety system stops the reply after three pieces
  (OpenAI `finish_reason: content_filter`, Anthropic `stop_reason: refusal`, Gemini
  `finishReason: SAFETY` with no content).

If a stream has no more than `after_chunks` events the fault does not fire on it (but
its count is consumed). Faults apply to generation requests (chat, messages,
generateContent), not to model lists or token counting.

Latency (`POST /_sim/latency`): per provider, or per provider and model (which wins
over the provider's setting, zeros included). A plain answer waits
`ttft_ms + output_tokens / tokens_per_s`; a stream waits `ttft_ms` before its response
head and first event, then `1 / tokens_per_s` before each further token event.

Prompt cache (`prompt_cache`): a system prompt of at least `CACHE_MIN_TOKENS` tokens
(by `count_tokens` of its text) that this simulator already saw for the same provider
and model is served from cache: `cached = count_tokens(system text)`. The first sighting
writes it. State is per simulator instance, bounded, and cleared by `/_sim/reset`.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

PROVIDERS = ("openai", "anthropic", "google")
PROVIDER_ALIASES = {"gemini": "google", "google-genai": "google"}
FAULT_MODES = ("status", "timeout", "disconnect", "malformed", "content_filter")
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key", "proxy-authorization", "cookie"})
SECRET_QUERY = frozenset({"key", "api_key"})
REDACTED = "[redacted]"
REQUEST_LOG_SIZE = 1000
CACHE_MIN_TOKENS = 1024
CACHE_ENTRIES = 10_000
_UNSET: Any = object()


@dataclass(slots=True)
class Fault:
    id: str
    provider: str
    model: str | None
    mode: str
    status: int | None
    retry_after: float | None
    after_chunks: int
    count: int | None  # remaining; None = until cleared
    stream: bool | None
    message: str | None

    def matches(self, provider: str, model: str, stream: bool) -> bool:
        return (
            self.provider == provider
            and (self.model is None or self.model == model)
            and (self.stream is None or self.stream is stream)
        )


@dataclass(slots=True, frozen=True)
class Latency:
    ttft_s: float
    token_s: float  # seconds between two token chunks (1 / tokens_per_s)


class ControlError(ValueError):
    """A control request the simulator cannot honour; answered with 400."""


class SimState:
    """Everything a simulator instance remembers between requests."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.latency: dict[tuple[str, str | None], Latency] = {}
        # (provider, monotonic time, method, raw path, headers proxy, parsed body): the
        # entries are formatted (and secrets redacted) only when someone asks for them.
        self.log: deque[tuple[str, float, str, str, Any, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.cache: dict[tuple[str, str, bytes], None] = {}
        self._fault_ids = itertools.count(1)
        self.stopping = False  # set on shutdown: requests held by a `timeout` fault let go

    # ----------------------------------------------------------------- hot path

    def record(self, provider: str, request: web.BaseRequest, body: Any) -> None:
        self.log.append((provider, time.time(), request.method, request.raw_path, request.headers, body))

    def match_fault(self, provider: str, model: str, stream: bool) -> Fault | None:
        for fault in self.faults:
            if fault.matches(provider, model, stream):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def latency_for(self, provider: str, model: str) -> Latency | None:
        latency = self.latency
        setting = latency.get((provider, model)) or latency.get((provider, None))
        # A model's all-zero setting overrides its provider's: full speed for that model.
        return setting if setting is not None and (setting.ttft_s or setting.token_s) else None

    def prompt_cache(self, provider: str, model: str, system_text: str, system_tokens: int) -> tuple[int, int]:
        """(cache-read tokens, cache-write tokens) of a request with this system prompt."""
        if system_tokens < CACHE_MIN_TOKENS:
            return 0, 0
        key = (provider, model, hashlib.sha256(system_text.encode()).digest())
        if key in self.cache:
            return system_tokens, 0
        if len(self.cache) >= CACHE_ENTRIES:
            del self.cache[next(iter(self.cache))]
        self.cache[key] = None
        return 0, system_tokens

    # ----------------------------------------------------------------- control

    def add_fault(self, spec: Any) -> Fault:
        if not isinstance(spec, dict):
            raise ControlError("a fault is a JSON object")
        provider = _provider(spec.get("provider"))
        mode = spec.get("mode")
        if mode not in FAULT_MODES:
            raise ControlError(f"mode must be one of {', '.join(FAULT_MODES)}")
        status = spec.get("status")
        if mode == "status" and not (isinstance(status, int) and 400 <= status <= 599):
            raise ControlError("mode 'status' needs an HTTP error status (400-599)")
        retry_after = spec.get("retry_after", _UNSET)
        if retry_after is _UNSET:
            retry_after = 1 if status == 429 else None
        if retry_after is not None and not (isinstance(retry_after, int | float) and retry_after >= 0):
            raise ControlError("retry_after must be a number of seconds >= 0, or null")
        after_chunks = spec.get("after_chunks") or 0
        count = spec.get("count")
        if not isinstance(after_chunks, int) or after_chunks < 0:
            raise ControlError("after_chunks must be an integer >= 0")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ControlError("count must be an integer >= 1, or omitted for 'until cleared'")
        model = _optional_str(spec, "model")
        stream = spec.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise ControlError("stream must be true, false or omitted")
        fault = Fault(
            id=f"fault_{next(self._fault_ids)}",
            provider=provider,
            model=model,
            mode=mode,
            status=status if mode == "status" else None,
            retry_after=retry_after,
            after_chunks=after_chunks,
            count=count,
            stream=stream,
            message=_optional_str(spec, "message"),
        )
        self.faults.append(fault)
        return fault

    def set_latency(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ControlError("a latency setting is a JSON object")
        provider = _provider(spec.get("provider"))
        model = _optional_str(spec, "model")
        ttft_ms = spec.get("ttft_ms") or 0
        tokens_per_s = spec.get("tokens_per_s") or 0
        for name, value in (("ttft_ms", ttft_ms), ("tokens_per_s", tokens_per_s)):
            if not isinstance(value, int | float) or value < 0:
                raise ControlError(f"{name} must be a number >= 0")
        self.latency[(provider, model)] = Latency(ttft_ms / 1000, 1 / tokens_per_s if tokens_per_s else 0.0)
        return {"provider": provider, "model": model, "ttft_ms": ttft_ms, "tokens_per_s": tokens_per_s}

    def latency_json(self) -> list[dict[str, Any]]:
        return [
            {
                "provider": provider,
                "model": model,
                "ttft_ms": setting.ttft_s * 1000,
                "tokens_per_s": 1 / setting.token_s if setting.token_s else 0,
            }
            for (provider, model), setting in self.latency.items()
        ]

    def requests_json(self, last: int | None) -> list[dict[str, Any]]:
        entries = list(self.log)
        if last is not None:
            entries = entries[-last:] if last > 0 else []
        return [_request_json(*entry) for entry in entries]

    def reset(self) -> None:
        self.faults.clear()
        self.latency.clear()
        self.log.clear()
        self.cache.clear()


def _provider(value: Any) -> str:
    value = PROVIDER_ALIASES.get(value, value)
    if value not in PROVIDERS:
        raise ControlError(f"provider must be one of {', '.join(PROVIDERS)}")
    return value


def _optional_str(spec: dict[str, Any], name: str) -> str | None:
    value = spec.get(name)
    if value is not None and not isinstance(value, str):
        raise ControlError(f"{name} must be a string or omitted")
    return value


def _request_json(provider: str, at: float, method: str, raw_path: str, headers: Any, body: Any) -> dict[str, Any]:
    path, _, query_string = raw_path.partition("?")
    query = {
        name: REDACTED if name in SECRET_QUERY else value
        for name, value in parse_qsl(query_string, keep_blank_values=True)
    }
    return {
        "provider": provider,
        "at": at,
        "method": method,
        "path": path,
        "query": query,
        "headers": {
            name.lower(): REDACTED if name.lower() in SECRET_HEADERS else value for name, value in headers.items()
        },
        "body": body,
    }


# --------------------------------------------------------------------------- endpoints

STATE = web.AppKey("simulator_state", SimState)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def _read_json(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as error:
        raise ControlError(f"the body is not valid JSON: {error}") from None


async def add_fault(request: web.Request) -> web.Response:
    try:
        fault = request.app[STATE].add_fault(await _read_json(request))
    except ControlError as error:
        return _json({"error": str(error)}, 400)
    return _json(asdict(fault))


async def list_faults(request: web.Request) -> web.Response:
    return _json({"faults": [asdict(f) for f in request.app[STATE].faults]})


async def clear_faults(request: web.Request) -> web.Response:
    faults = request.app[STATE].faults
    cleared = len(faults)
    faults.clear()
    return _json({"cleared": cleared})


async def delete_fault(request: web.Request) -> web.Response:
    faults = request.app[STATE].faults
    for fault in faults:
        if fault.id == request.match_info["fault_id"]:
            faults.remove(fault)
            return _json(asdict(fault))
    return _json({"error": "no such fault"}, 404)


async def set_latency(request: web.Request) -> web.Response:
    try:
        setting = request.app[STATE].set_latency(await _read_json(request))
    except ControlError as error:
        return _json({"error": str(error)}, 400)
    return _json(setting)


async def list_latency(request: web.Request) -> web.Response:
    return _json({"latency": request.app[STATE].latency_json()})


async def clear_latency(request: web.Request) -> web.Response:
    request.app[STATE].latency.clear()
    return _json({"cleared": True})


async def list_requests(request: web.Request) -> web.Response:
    last_param = request.query.get("last")
    try:
        last = int(last_param) if last_param is not None else None
    except ValueError:
        return _json({"error": "last must be an integer"}, 400)
    return _json({"requests": request.app[STATE].requests_json(last)})


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return _json({"reset": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_sim/faults", add_fault)
    app.router.add_get("/_sim/faults", list_faults)
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_delete("/_sim/faults/{fault_id}", delete_fault)
    app.router.add_post("/_sim/latency", set_latency)
    app.router.add_get("/_sim/latency", list_latency)
    app.router.add_delete("/_sim/latency", clear_latency)
    app.router.add_get("/_sim/requests", list_requests)
    app.router.add_post("/_sim/reset", reset)
