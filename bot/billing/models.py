"""What a balance check returns: honest figures, each optional, money as Decimal.

A result carries money (`remaining`/`total`/`used` in `currency`), or a non-money balance
(`unit`: Poe points, ElevenLabs characters — never shown with a currency symbol, never
added into money totals), and/or plan windows (`windows`: a coding plan's 5-hour / weekly
/ monthly limits). A key whose answer is only windows has kind `QUOTA`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from bot.billing.errors import MalformedFigure
from bot.limits import MAX_CURRENCY
from bot.secret import Secret


class FigureKind(StrEnum):
    """What the provider can tell us about a key."""

    BALANCE = "balance"  # remaining credit (maybe with total/used)
    SPEND = "spend"  # money spent over a period, nothing about what is left
    VALIDITY = "validity"  # only whether the key works
    QUOTA = "quota"  # a plan key: only usage windows (see `Window`), no money figure


class KeyState(StrEnum):
    """Key states a provider reports as an answer, not as an error."""

    OK = "ok"
    EXHAUSTED = "exhausted"  # quota used up (relays answer 401 "额度已用尽")
    EXPIRED = "expired"  # past its expiry date


class Unit(StrEnum):
    """What a figure counts. Only MONEY has a currency; the others are never money."""

    REQUESTS = "requests"
    TOKENS = "tokens"
    MONEY = "money"
    CHARACTERS = "characters"
    POINTS = "points"
    PERCENT = "percent"  # the provider gives only a used share (`Window.used_pct`)


class WindowState(StrEnum):
    OK = "ok"
    EXHAUSTED = "exhausted"  # used up until `resets_at`
    UNLIMITED = "unlimited"  # the plan does not cap this window


#: Bounds for what a provider can make us store and show (hostile input stays small).
MAX_WINDOWS = 24
MAX_WINDOW_NAME = 32
_HUNDRED = Decimal(100)

#: Every figure a result carries (money, points, characters, tokens, window counts) is
#: checked where the result is built, whatever the adapter parsed or computed: the
#: billing boundary for every provider (docs/security.md §6). Nothing larger, longer or
#: finer reaches the alert rules, storage (snapshot figures are text, `FIGURE_TEXT_MAX`)
#: or formatting. 10^16 leaves room for a sum or difference of two provider figures
#: (`_parse.MAX_AMOUNT` is 10^15); 28 digits is the decimal context's precision, so any
#: figure computed from bounded inputs fits.
MAX_FIGURE_EXPONENT = 16
MAX_FIGURE = Decimal(10) ** MAX_FIGURE_EXPONENT
MAX_FIGURE_DIGITS = 28
MIN_FIGURE_EXPONENT = -30  # a non-zero figure finer than 10^-30 is noise, not money
#: ISO 4217 codes (any case), plus the few longer tickers some sites bill in ("USDT").
CURRENCY_RE = re.compile(rf"[A-Za-z][A-Za-z0-9]{{2,{MAX_CURRENCY - 1}}}")


def figure_fault(value: object) -> str | None:
    """Why this cannot be a figure, or None when it can (see MAX_FIGURE)."""
    if not isinstance(value, Decimal):
        return f"must be Decimal, got {type(value).__name__}"
    if not value.is_finite():
        return "is not a finite number"
    if value.is_zero():
        return None
    # adjusted() is the exponent of the leading digit: |value| >= 10^16 exactly when it is
    # >= 16. Unlike abs(), it never raises (abs(1E+1000000) overflows the context).
    if value.adjusted() >= MAX_FIGURE_EXPONENT or value.adjusted() < MIN_FIGURE_EXPONENT:
        return "is out of range"
    digits = "".join(map(str, value.as_tuple().digits)).strip("0")  # not normalize(): it rounds
    if len(digits) > MAX_FIGURE_DIGITS:
        return "has too many digits"
    return None


def _check_figure(name: str, value: Decimal | None) -> None:
    if value is None:
        return
    fault = figure_fault(value)
    if fault is not None:
        if not isinstance(value, Decimal):
            raise TypeError(f"{name} {fault}")
        raise MalformedFigure(f"{name} {fault}")


def _check_currency(currency: object) -> None:
    if currency is not None and (
        not isinstance(currency, str) or not CURRENCY_RE.fullmatch(currency)
    ):
        raise MalformedFigure("currency is not a currency code")


@dataclass(frozen=True, slots=True)
class Window:
    """One usage window of a plan: how much of it is used and when it starts afresh.

    `name` is a stable short id ("5h", "daily", "weekly", "monthly", or the provider's
    own, e.g. a model name): alert state is keyed on it, so an adapter must derive it
    from the window's meaning, never from a changing figure. Give `used` and `limit`
    when the provider counts, `used_pct` (0–100) when it only gives a share; `None`
    means "not said", never zero.
    """

    name: str
    used: Decimal | None = None
    limit: Decimal | None = None
    used_pct: Decimal | None = None
    unit: Unit = Unit.PERCENT
    currency: str | None = None  # only for Unit.MONEY
    resets_at: datetime | None = None
    period: timedelta | None = None  # the window's length (for pace), when known
    state: WindowState = WindowState.OK

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not self.name.strip()
            or len(self.name) > MAX_WINDOW_NAME
            or not self.name.isprintable()
        ):
            raise ValueError("window name must be 1-32 printable characters")
        object.__setattr__(self, "unit", Unit(self.unit))
        object.__setattr__(self, "state", WindowState(self.state))
        for name in ("used", "limit", "used_pct"):
            value = getattr(self, name)
            _check_figure(name, value)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be a finite number >= 0")
        if self.used_pct is not None and self.used_pct > _HUNDRED:
            raise ValueError("used_pct must be within 0-100")
        if self.currency is not None and self.unit is not Unit.MONEY:
            raise ValueError("only a money window has a currency")
        _check_currency(self.currency)
        if self.resets_at is not None and self.resets_at.tzinfo is None:
            raise ValueError("resets_at must be timezone-aware")
        if self.period is not None and self.period <= timedelta(0):
            raise ValueError("period must be positive")

    @property
    def percent_used(self) -> Decimal | None:
        """Used share 0–100: the provider's own, else used/limit (capped at 100)."""
        if self.state is WindowState.UNLIMITED:
            return None
        if self.used_pct is not None:
            return self.used_pct
        if self.used is not None and self.limit is not None and self.limit > 0:
            return min(_HUNDRED, self.used * _HUNDRED / self.limit)
        if self.state is WindowState.EXHAUSTED:
            return _HUNDRED
        return None

    @property
    def remaining(self) -> Decimal | None:
        """What is left in the window (never below zero), when both counts are known."""
        if self.used is None or self.limit is None:
            return None
        return max(Decimal(0), self.limit - self.used)


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
    # When the provider answered; stamped by BillingService from the program's clock.
    fetched_at: datetime | None = None
    # None: remaining/total/used are money in `currency`. Otherwise they count this unit
    # (points, characters, …): no currency, never summed with money.
    unit: Unit | None = None
    windows: tuple[Window, ...] = ()  # plan windows, beside or (kind QUOTA) instead of money

    def __post_init__(self) -> None:
        for name in ("remaining", "total", "used"):
            _check_figure(name, getattr(self, name))
        _check_currency(self.currency)
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        if not isinstance(self.extras, MappingProxyType):
            object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))
        unit = None if self.unit is None else Unit(self.unit)
        if unit is Unit.MONEY:
            unit = None  # money is the default meaning
        if unit is Unit.PERCENT:
            raise ValueError("a balance is not a percentage; use a Window")
        if unit is not None and self.currency is not None:
            raise ValueError(f"a balance in {unit.value} has no currency")
        object.__setattr__(self, "unit", unit)
        windows = tuple(self.windows)
        if any(not isinstance(w, Window) for w in windows):
            raise TypeError("windows must be Window instances")
        if len(windows) > MAX_WINDOWS:
            raise ValueError(f"at most {MAX_WINDOWS} windows")
        if len({w.name for w in windows}) != len(windows):
            raise ValueError("window names must be unique")
        object.__setattr__(self, "windows", windows)


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
