"""What the request handlers share in one gateway process, built at start-up."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace.export import SpanExporter

from adapters.base import Adapter, Target
from adapters.catalog import Catalog, ModelInfo, default_catalog
from adapters.http import HttpClient
from adapters.registry import build_adapters
from analytics.config import AnalyticsConfig
from analytics.service import open_analytics
from gateway.admission import PROVIDER_KEYS, start_tenancy, stop_tenancy
from gateway.auth import KeyAuthenticator
from gateway.breakers import BreakerPolicy, Breakers
from gateway.config import Settings
from gateway.latency import LatencyTracker
from gateway.observability import build_tracer
from gateway.shared_state import SharedState
from ledger.application import Ledger
from ledger.loop_writer import writer_for
from ledger.price_books import PriceBooks
from ledger.pricing import PriceBook


class Services:
    def __init__(self, settings: Settings, span_exporter: SpanExporter | None = None) -> None:
        self.settings = settings
        self.catalog: Catalog = default_catalog()
        # The first price book is the catalog's list prices; published, versioned
        # books replace it with the tenancy/billing work.
        self.price_book = PriceBook.from_table({m.id: m.price for m in self.catalog.models})
        # Requests are priced by the published version in force when received (this
        # book is the base: ledger/price_books.py).
        self.price_books = PriceBooks(self.price_book)
        self.tracer = build_tracer(span_exporter)
        self.breakers = Breakers(
            BreakerPolicy(consecutive=settings.breaker_consecutive, cooldown_s=settings.breaker_cooldown_s)
        )
        self.latency = LatencyTracker()
        self._span_exporter = span_exporter

    async def start(self) -> None:
        self.ledger = await asyncio.to_thread(
            Ledger.open, self.settings.database_url, self.settings.data_dir
        )
        self.writer = writer_for(self.ledger)
        await self.writer.start()
        self.authenticator = KeyAuthenticator(self.ledger)
        await start_tenancy(self)  # projection, rate limits, admission gate, price books
        self.http = HttpClient()
        self.adapters: dict[str, Adapter] = build_adapters(self.http)
        self.shared = SharedState(self.settings.redis_url, self.breakers, self.latency,
                                  [m.id for m in self.catalog.models], prefix=self.settings.redis_prefix)
        await self.shared.start()
        # Analytics last: it follows the ledger and must never hold up serving.
        self.analytics = open_analytics(AnalyticsConfig.from_env(self.settings.data_dir),
                                        self.settings.database_url, self.settings.admin_token)
        await self.analytics.start()

    async def stop(self) -> None:
        await self.analytics.stop()
        await self.shared.stop()
        await self.http.close()
        await self.writer.stop()
        await stop_tenancy(self)

    def is_configured(self, model: ModelInfo) -> bool:
        return model.provider in self.settings.providers and model.provider in self.adapters

    def target(self, model: ModelInfo, timeout_s: float, api_key: str | None = None) -> Target:
        """Where and how to call `model`: with `api_key`, else the calling tenant's own
        key for the provider (set by the admission check), else the gateway's."""
        provider = self.settings.providers[model.provider]
        return Target(
            provider=model.provider,
            model=model.upstream,
            base_url=provider.base_url,
            api_key=api_key or (PROVIDER_KEYS.get() or {}).get(model.provider) or provider.api_key,
            timeout_s=timeout_s,
        )
