"""Kimi Code (the coding subscription, not the Moonshot platform): its plan windows.

`GET https://api.kimi.com/coding/v1/usages` with the Kimi Code key (Bearer) →
`usage{limit, used, remaining, resetTime}` (the weekly request quota) and
`limits[]{window{duration, timeUnit}, detail{limit, used, remaining, resetTime}}` (the
rolling 5-hour rate limit). Counts come as strings or numbers; reset times as RFC 3339
with nanoseconds. A Kimi Code key is not a Moonshot key: Moonshot's balance endpoint
does not know it, and this one has no money. Source: docs/providers.md ("kimi-code").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import (
    MAX_WINDOWS,
    BalanceResult,
    FigureKind,
    KeyState,
    Unit,
    Window,
    WindowState,
)
from bot.billing.providers._parse import (
    amount,
    api_root,
    error_object,
    from_iso,
    get_json_object,
    period_name,
    unique_name,
)
from bot.billing.providers.base import FetchContext, Provider

_TIME_UNITS = {
    "TIME_UNIT_MINUTE": timedelta(minutes=1),
    "TIME_UNIT_HOUR": timedelta(hours=1),
    "TIME_UNIT_DAY": timedelta(days=1),
}
_MAX_DURATION = 100_000
WEEK = timedelta(days=7)


class KimiCodeProvider(Provider):
    id = "kimi-code"
    title = "Kimi Code"
    hint = "Kimi Code plan (api.kimi.com/coding): 5-hour and weekly limits"
    kind = FigureKind.QUOTA
    default_base_url = "https://api.kimi.com/coding"
    order = 130

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        body = await get_json_object(ctx, f"{_coding_root(ctx.base_url)}/v1/usages")
        error = error_object(body)
        if error is not None:
            raise error
        usage = body.get("usage")
        if not isinstance(usage, dict):
            raise BillingError(ErrorKind.MALFORMED, "no usage object")
        windows: list[Window] = []
        taken: set[str] = set()
        limits = body.get("limits") or []
        if not isinstance(limits, list):
            raise BillingError(ErrorKind.MALFORMED, "limits is not a list")
        for item in limits[: MAX_WINDOWS - 1]:
            if not isinstance(item, dict):
                raise BillingError(ErrorKind.MALFORMED, "limit is not an object")
            period = _period(item.get("window"))
            window = _window(item.get("detail"), period_name(period, "limit"), period, taken)
            windows.append(window)
            taken.add(window.name)
        windows.append(_window(usage, "weekly", WEEK, taken))
        # shortest first (5-hour, then weekly); windows of unknown length last
        windows.sort(key=lambda w: (w.period is None, w.period or WEEK))
        blocked = any(w.state is WindowState.EXHAUSTED for w in windows)
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.QUOTA,
            windows=tuple(windows),
            state=KeyState.EXHAUSTED if blocked else KeyState.OK,
            fetched_at=ctx.now,
        )


def _coding_root(base_url: str) -> str:
    """`…/coding` on api.kimi.com even when the bare host or the `/v1` base is pasted."""
    root = api_root(base_url)
    host = (urlsplit(root).hostname or "").lower()
    if host == "api.kimi.com" and not urlsplit(root).path.rstrip("/").endswith("/coding"):
        return f"{root.rstrip('/')}/coding"
    return root


def _period(window: Any) -> timedelta | None:
    if not isinstance(window, dict):
        return None
    duration, unit = window.get("duration"), window.get("timeUnit")
    if type(duration) is not int or not 0 < duration <= _MAX_DURATION or unit not in _TIME_UNITS:
        return None
    return _TIME_UNITS[unit] * duration


def _window(detail: Any, name: str, period: timedelta | None, taken: set[str]) -> Window:
    if not isinstance(detail, dict):
        raise BillingError(ErrorKind.MALFORMED, "usage detail is not an object")
    limit = _count(detail, "limit")
    used = _count(detail, "used")
    remaining = _count(detail, "remaining")
    if limit is None:
        raise BillingError(ErrorKind.MALFORMED, "usage detail without a limit")
    if used is None:
        if remaining is None:
            raise BillingError(ErrorKind.MALFORMED, "usage detail without used or remaining")
        used = max(Decimal(0), limit - remaining)
    left = remaining if remaining is not None else limit - used
    reset = detail.get("resetTime", detail.get("reset_time"))
    return Window(
        name=unique_name(name, taken),
        used=used,
        limit=limit,
        unit=Unit.REQUESTS,
        resets_at=from_iso(reset),
        period=period,
        state=WindowState.EXHAUSTED if left <= 0 else WindowState.OK,
    )


def _count(detail: Mapping[str, Any], name: str) -> Decimal | None:
    value = detail.get(name)
    return None if value is None else amount(value, minimum=Decimal(0))


PROVIDER = KimiCodeProvider()
