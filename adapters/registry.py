"""The adapters of a gateway process, by provider name."""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import Adapter
from .google import GoogleAdapter
from .http import HttpClient
from .openai import OpenAIAdapter

ADAPTER_CLASSES = (OpenAIAdapter, AnthropicAdapter, GoogleAdapter)


def build_adapters(http: HttpClient) -> dict[str, Adapter]:
    """One adapter per provider ("openai", "anthropic", "google"), sharing `http`."""
    return {cls.provider: cls(http) for cls in ADAPTER_CLASSES}
