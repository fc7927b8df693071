"""What a balance check returns: honest figures, each optional, money as Decimal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from bot.secret import Secret


class FigureKind(StrEnum):
    """What the provider can tell us about a key."""

    BALANCE = "balance"  # remaining credit (maybe with total/used)
    SPEND = "spend"  # money spent over a period, nothing about what is left
    VALIDITY = "validity"  # only whether the key works


class KeyState(StrEnum):
    """Key states a provider reports as an answer, not as an error."""

    OK = "ok"
    EXHAUSTED = "exhausted"  # quota used up (relays answer 401 "额度已用尽")
    EXPIRED = "expired"  # past its expiry date


@dataclass(frozen=True, slots=True)
class BalanceResult:
    """One key's figures. `None` means "the provider did not say", never zero."""

    provider: str
    kind: FigureKind
    currency: str | None = None  # ISO 4217 code ("USD", "CNY") or None when unknown
    remaining: Decimal | None = None
    total: Decimal | None = None
    used: Decimal | None = None
    unlimited: bool = False  # the key has no spending limit: remaining/total are None
    expires_at: datetime | None = None
    never_expires: bool = False  # the provider said explicitly that it does not expire
    state: KeyState = KeyState.OK
    period_start: datetime | None = None  # for SPEND: spend is counted from here
    estimate: bool = False  # remaining is derived from a user-entered starting balance
    extras: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        for name in ("remaining", "total", "used"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Decimal):
                raise TypeError(f"{name} must be Decimal, got {type(value).__name__}")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        if not isinstance(self.extras, MappingProxyType):
            object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """Everything needed to check one key. `key_id` is the caller's handle for the result."""

    key_id: str
    provider: str
    secret: Secret
    base_url: str | None = None  # user-chosen base URL (relay); canonical form
    options: Mapping[str, str] = field(default_factory=dict)  # non-secret per-key settings


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """`fetch_many` returns one of these per request, success or failure."""

    key_id: str
    provider: str
    result: BalanceResult | None = None
    error: Exception | None = None  # a BillingError in practice
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None
