"""Provider discovery: every module in `bot.billing.providers` with a `PROVIDER` instance,
plus the operator's providers declared in `PROVIDERS_FILE` (`bot.billing.declared`).

Adding a provider is adding one module; nothing else needs editing.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from bot.billing.providers.base import Provider

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

_PACKAGE = "bot.billing.providers"


class ProviderRegistry(Mapping[str, Provider]):
    """Providers keyed by id, iterated in button order (`order`, then id)."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        self._by_id: dict[str, Provider] = {}
        for provider in providers:
            if provider.id in self._by_id:
                raise ValueError(f"duplicate provider id {provider.id!r}")
            self._by_id[provider.id] = provider
        self._ordered = sorted(self._by_id.values(), key=lambda p: (p.order, p.id))

    def __getitem__(self, provider_id: str) -> Provider:
        return self._by_id[provider_id]

    def __iter__(self) -> Iterator[str]:
        return (p.id for p in self._ordered)

    def __len__(self) -> int:
        return len(self._by_id)

    def ordered(self) -> list[Provider]:
        return list(self._ordered)


def discover(package: str = _PACKAGE) -> ProviderRegistry:
    """Import every submodule of `package` and collect its `PROVIDER`.

    Modules whose names start with `_` (shared helpers) and `base` are skipped.
    """
    pkg = importlib.import_module(package)
    found: list[Provider] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        provider = getattr(module, "PROVIDER", None)
        if isinstance(provider, Provider):
            found.append(provider)
        else:
            log.debug("module %s has no PROVIDER; skipped", info.name)
    return ProviderRegistry(found)


@cache
def default_registry() -> ProviderRegistry:
    """The process-wide registry of the bundled providers (imported once)."""
    return discover()


def registry_for(settings: Settings) -> ProviderRegistry:
    """The built-in providers plus those declared in `settings.providers_file`.

    What the BillingService sees (app.build_services, `balance-bot check`). A broken file
    raises ConfigError (exit 78) naming the entry. Loaded once per file and URL policy.
    """
    path = settings.providers_file
    if path is None:
        return default_registry()
    return _with_declared(Path(path), settings.allow_private_base_urls)


@lru_cache(maxsize=8)
def _with_declared(path: Path, allow_private: bool) -> ProviderRegistry:
    from bot.billing.declared import load_declared

    builtins = default_registry()
    declared = load_declared(path, builtin_ids=builtins, allow_private=allow_private)
    return ProviderRegistry([*builtins.values(), *declared])
