"""The interface every provider module implements.

A provider module holds one `Provider` subclass and an instance named `PROVIDER`;
`bot.billing.registry` discovers it. The provider only turns HTTP replies into a
`BalanceResult` or a `BillingError`: timeouts, retries, size caps and the SSRF guard
belong to the HTTP layer (`bot.billing.http`) that hands it a `FetchContext`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any, ClassVar

from bot.billing.models import BalanceResult, FigureKind
from bot.billing.reply import HttpClient, HttpReply, parse_retry_after
from bot.secret import Secret

# What a provider sees of the HTTP layer lives in bot.billing.reply; re-exported here so a
# provider module needs one import for its whole interface.
__all__ = [
    "FetchContext",
    "HttpClient",
    "HttpReply",
    "Match",
    "Provider",
    "SiteMemo",
    "parse_retry_after",
]


class SiteMemo:
    """Facts about a site that do not depend on the key and rarely change — which
    endpoints it has, its units — remembered for a while, so a sweep does not re-learn
    them for every key on the same relay. One per BillingService; bounded; never a key.
    """

    def __init__(self, ttl: float = 3600.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def get(self, fact: Hashable) -> Any:
        item = self._data.get(fact)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._data[fact]
            return None
        return item[1]

    def put(self, fact: Hashable, value: Any) -> None:
        self._data[fact] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(fact)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)


@dataclass(frozen=True, slots=True)
class FetchContext:
    http: HttpClient
    key: Secret
    base_url: str  # resolved: the user's URL, the operator's override, or the default
    options: Mapping[str, str] = field(default_factory=dict)
    now: datetime = field(kw_only=True)  # the program's clock (bot.clock), via BillingService
    memo: SiteMemo = field(default_factory=SiteMemo)  # shared per service; fresh if not given

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key.reveal()}"}


class Match(IntEnum):
    """How sure key detection is that a key belongs to a provider."""

    NO = 0
    POSSIBLE = 1  # e.g. a bare `sk-` key: ask the user
    CERTAIN = 2  # e.g. `sk-or-v1-` is OpenRouter


class Provider(ABC):
    id: ClassVar[str]  # public contract: the provider id users type (provider=ID)
    title: ClassVar[str]  # display name, e.g. "DeepSeek"
    hint: ClassVar[str]  # one line for the provider buttons (English msgid, translated by UI)
    kind: ClassVar[FigureKind] = FigureKind.BALANCE
    default_base_url: ClassVar[str | None] = None
    needs_base_url: ClassVar[bool] = False  # the user must give a base URL (relay)
    #: Call even the default base URL through the SSRF-guarded client (declared providers:
    #: their URL comes from a file, not from this code).
    guarded: ClassVar[bool] = False
    order: ClassVar[int] = 100  # position in the provider buttons
    #: The provider's own console page for topping up (alerts carry a "Top up" button to
    #: it); None when there is none or it is not publicly known (relays: each site's own).
    billing_url: ClassVar[str | None] = None
    #: What this provider needs said in its own words (English msgids, translated by the
    #: UI): keyed by an ErrorKind value for a failure (e.g. "wrong_key_type": which key
    #: the provider wants) or by a result's `extras["hint"]` for an answer (e.g.
    #: "balance_api_retired"). Fixed texts only, never upstream words.
    explanations: ClassVar[Mapping[str, str]] = {}

    def detect(self, key: str) -> Match:
        """Guess from the key's shape only; never by sending it anywhere."""
        return Match.NO

    @abstractmethod
    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        """Return the key's figures or raise `BillingError`."""
