"""The model catalog (`catalog.toml`): ids, aliases, limits, capabilities, list prices."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("catalog.toml")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str  # provider/model, as clients name it
    provider: str
    upstream: str  # the provider's own id
    aliases: tuple[str, ...]
    context_window: int
    max_output: int
    capabilities: frozenset[str]
    quality: float
    # USD per million tokens, keyed "input", "output", "cached_input".
    price: dict[str, Decimal]

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities


class Catalog:
    def __init__(self, models: list[ModelInfo]):
        self.models = models
        self._by_name: dict[str, ModelInfo] = {}
        for model in models:
            for name in (model.id, *model.aliases, f"{model.provider}/{model.upstream}"):
                self._by_name.setdefault(name, model)

    def find(self, name: str) -> ModelInfo | None:
        """The model a client means by `name`: its id, an alias, or provider/upstream-id."""
        return self._by_name.get(name)

    def for_providers(self, providers: set[str] | frozenset[str]) -> list[ModelInfo]:
        return [m for m in self.models if m.provider in providers]


def load_catalog(path: Path = CATALOG_FILE) -> Catalog:
    raw = tomllib.loads(path.read_text())
    return Catalog([_model(entry) for entry in raw["model"]])


@cache
def default_catalog() -> Catalog:
    return load_catalog()


def _model(entry: dict) -> ModelInfo:
    return ModelInfo(
        id=entry["id"],
        provider=entry["provider"],
        upstream=entry["upstream"],
        aliases=tuple(entry.get("aliases", ())),
        context_window=int(entry["context_window"]),
        max_output=int(entry["max_output"]),
        capabilities=frozenset(entry["capabilities"]),
        quality=float(entry["quality"]),
        price={unit: Decimal(value) for unit, value in entry["price"].items()},
    )
