"""Settings, read once from the environment (see docs/operations.md for each variable)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    api_key: str
    base_url: str


# provider -> (key variable, base-URL variable, default base URL). Base URLs follow the
# official SDKs: OpenAI's includes /v1, Anthropic's and Google's do not.
PROVIDER_ENV: dict[str, tuple[str, str, str]] = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
    "google": ("GOOGLE_API_KEY", "GOOGLE_BASE_URL", "https://generativelanguage.googleapis.com"),
}


def _master_keys(env: Mapping[str, str]) -> str | None:
    """TWOAPI_MASTER_KEY, then TWOAPI_MASTER_KEY_PREVIOUS's keys: one key ring."""
    current = (env.get("TWOAPI_MASTER_KEY") or "").strip()
    previous = (env.get("TWOAPI_MASTER_KEY_PREVIOUS") or "").strip()
    if not previous:
        return current or None
    # Earlier keys without a current one cannot seal: the ring's first place stays
    # empty, so using it says TWOAPI_MASTER_KEY is not set.
    return f"{current},{previous}"


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path(".twoapi")
    port: int = 8080
    host: str = "127.0.0.1"
    database_url: str | None = None
    redis_url: str | None = None
    admin_token: str | None = None
    demo_key: str | None = None
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    max_body_bytes: int = 8 * 1024 * 1024
    upstream_timeout_s: float = 60.0
    request_timeout_s: float = 120.0
    # Routing defaults of the whole gateway (tenants' and keys' own defaults, and the
    # request's `routing`, come first): strategy for model "auto", attempts in all.
    routing_strategy: str = "cost"
    max_attempts: int = 4
    redis_prefix: str = "twoapi"
    breaker_consecutive: int = 5
    breaker_cooldown_s: float = 10.0
    log_level: str = "info"
    # TWOAPI_MASTER_KEY, which encrypts tenants' provider keys, then any earlier keys
    # from TWOAPI_MASTER_KEY_PREVIOUS, comma-separated: the first seals, any opens
    # (ledger/credentials.py; rotation in docs/billing.md).
    master_key: str | None = None
    projections: str = "thread"  # TWOAPI_PROJECTIONS: "thread" (run them here) or "off"
    # TWOAPI_CHAT_EDGE: "on" answers POST /v1/chat/completions from ASGI directly
    # (gateway/chat_edge.py); "off" leaves it to Quart's route (the same handler).
    chat_edge: bool = True
    # TWOAPI_RATE_LEASE_SHARE: the share of a rate limit one process may take from Redis
    # ahead of use, so that its requests spend it with no Redis call (gateway/rate_leases.py);
    # 0 sends every request's take to Redis.
    rate_lease_share: float = 0.01

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        providers = {}
        for name, (key_var, url_var, default_url) in PROVIDER_ENV.items():
            if env.get(key_var):
                base_url = (env.get(url_var) or default_url).rstrip("/")
                providers[name] = ProviderConfig(name, env[key_var], base_url)
        return cls(
            data_dir=Path(env.get("TWOAPI_DATA_DIR") or ".twoapi"),
            port=int(env.get("PORT") or 8080),
            host=env.get("TWOAPI_HOST") or "127.0.0.1",
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            admin_token=env.get("TWOAPI_ADMIN_TOKEN") or None,
            demo_key=env.get("TWOAPI_DEMO_KEY") or None,
            providers=providers,
            max_body_bytes=int(env.get("TWOAPI_MAX_BODY_BYTES") or 8 * 1024 * 1024),
            upstream_timeout_s=float(env.get("TWOAPI_UPSTREAM_TIMEOUT_S") or 60),
            request_timeout_s=float(env.get("TWOAPI_REQUEST_TIMEOUT_S") or 120),
            routing_strategy=_choice("TWOAPI_ROUTING_STRATEGY", env.get("TWOAPI_ROUTING_STRATEGY"), "cost",
                                     ("cost", "latency", "quality")),
            max_attempts=_whole("TWOAPI_MAX_ATTEMPTS", env.get("TWOAPI_MAX_ATTEMPTS"), 4, 1, 10),
            redis_prefix=env.get("TWOAPI_REDIS_PREFIX") or "twoapi",
            breaker_consecutive=int(env.get("TWOAPI_BREAKER_CONSECUTIVE") or 5),
            breaker_cooldown_s=float(env.get("TWOAPI_BREAKER_COOLDOWN_S") or 10),
            log_level=(env.get("TWOAPI_LOG_LEVEL") or "info").lower(),
            master_key=_master_keys(env),
            projections=(env.get("TWOAPI_PROJECTIONS") or "thread").lower(),
            chat_edge=_choice("TWOAPI_CHAT_EDGE", env.get("TWOAPI_CHAT_EDGE"), "on", ("on", "off")) == "on",
            rate_lease_share=_fraction("TWOAPI_RATE_LEASE_SHARE", env.get("TWOAPI_RATE_LEASE_SHARE"), 0.01, 0.1),
        )


def _choice(name: str, given: str | None, default: str, choices: tuple[str, ...]) -> str:
    value = (given or default).lower()
    if value not in choices:
        raise ValueError(f"{name} is one of {', '.join(choices)}, not {value!r}")
    return value


def _fraction(name: str, given: str | None, default: float, high: float) -> float:
    text = given or str(default)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= high:
        raise ValueError(f"{name} is a number from 0 to {high}, not {text!r}")
    return value


def _whole(name: str, given: str | None, default: int, low: int, high: int) -> int:
    text = given or str(default)
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name} is a whole number from {low} to {high}, not {text!r}")
    return int(text)
