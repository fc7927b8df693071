"""Guess a key's provider from its shape alone; the key is never sent anywhere to find out."""

from __future__ import annotations

from collections.abc import Iterable

from bot.billing.providers.base import Match, Provider

RELAY_ID = "relay"


def detect(key: str, base_url: str | None, providers: Iterable[Provider]) -> list[Provider]:
    """Candidate providers, best first.

    A base URL means a relay (one-api/new-api style site). Otherwise a CERTAIN match
    wins alone; else every POSSIBLE match in button order, so an ambiguous bare `sk-`
    gives several and the UI asks the user.
    """
    pool = list(providers)
    if base_url:
        relays = [p for p in pool if p.id == RELAY_ID] or [p for p in pool if p.needs_base_url]
        return sorted(relays, key=lambda p: (p.order, p.id))
    key = key.strip()
    scored = [(p, p.detect(key)) for p in pool]
    certain = [p for p, m in scored if m == Match.CERTAIN]
    if certain:
        return sorted(certain, key=lambda p: (p.order, p.id))[:1]
    possible = [p for p, m in scored if m == Match.POSSIBLE]
    return sorted(possible, key=lambda p: (p.order, p.id))
