"""claude-relay-service (CRS, Wei-Shaw/claude-relay-service) on the user's site
(docs/providers.md §crs).

`POST /apiStats/api/user-stats` with `{"apiKey": "cr_…"}` — the key travels in the JSON
body (src/routes/apiStats.js). The answer is `{success: true, data: {name, expiresAt,
isActivated, expirationMode, usage: {total: {cost, …}}, limits: {dailyCostLimit,
currentDailyCost, totalCostLimit, currentTotalCost, weeklyOpusCostLimit, weeklyOpusCost,
rateLimitWindow (minutes), rateLimitCost, currentWindowCost, windowRemainingSeconds, …}}}`.
Costs are USD; a limit of 0 means "no limit".

* With a total cost limit, that is the balance: limit − current total cost.
* Without one the key has no money limit (unlimited); what it spent is still shown.
* A daily cost limit reached means used up until the day turns (state EXHAUSTED).
* Windows: the daily cost limit ("daily", reset time not published: it turns at midnight
  in the server's configured time zone), the rate-limit window (`rateLimitWindow` minutes,
  cost and/or request caps, ending at `windowEndTime` ms) and the weekly Opus cost limit.

Refusals (401 `{error, message}`): "已过期" = expired, "已被禁用" / not found = rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState, Unit, Window, WindowState
from bot.billing.providers._parse import (
    amount,
    amount_or_none,
    api_root,
    from_iso,
    from_unix,
    json_object,
    plain,
    window,
)
from bot.billing.providers._usage_script import state_from_message
from bot.billing.providers.base import FetchContext, HttpReply, Match, Provider

_MAX_TEXT = 100
_ZERO = Decimal(0)
_MAX_WINDOW_MINUTES = 60 * 24 * 31


class CRSProvider(Provider):
    id = "crs"
    title = "claude-relay-service"
    hint = "claude-relay-service (CRS) key cr_…"
    kind = FigureKind.BALANCE
    default_base_url = None
    needs_base_url = True
    order = 13

    def detect(self, key: str) -> Match:
        return Match.CERTAIN if key.startswith("cr_") else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        root = _site_root(ctx.base_url)
        reply = await ctx.http.post(
            f"{root}/apiStats/api/user-stats", headers={}, json={"apiKey": ctx.key.reveal()}
        )
        if reply.status != 200:
            return self._refusal(ctx, reply)
        body = json_object(reply)
        data = body.get("data")
        if body.get("success") is not True or not isinstance(data, dict):
            raise BillingError(ErrorKind.MALFORMED, "no stats in the answer", status=200)
        return self._from_stats(ctx, data)

    def _from_stats(self, ctx: FetchContext, data: Mapping[str, Any]) -> BalanceResult:
        limits = data.get("limits")
        if not isinstance(limits, dict):
            limits = {}
        total_limit = _limit(limits.get("totalCostLimit"))
        current_total = amount_or_none(limits.get("currentTotalCost"))
        usage = data.get("usage")
        if current_total is None and isinstance(usage, dict):
            total_block = usage.get("total")
            if isinstance(total_block, dict):
                current_total = amount_or_none(total_block.get("cost"))

        extras: dict[str, Any] = {}
        name = data.get("name")
        if isinstance(name, str) and name.strip():
            extras["key_name"] = "".join(c for c in name if c.isprintable())[:_MAX_TEXT]
        daily_limit = _limit(limits.get("dailyCostLimit"))
        daily_cost = amount_or_none(limits.get("currentDailyCost"))
        if daily_limit is not None:
            extras["daily_cost_limit"] = plain(daily_limit)
            if daily_cost is not None:
                extras["daily_cost"] = plain(daily_cost)

        if total_limit is not None:
            remaining: Decimal | None = total_limit - (current_total or _ZERO)
            total: Decimal | None = total_limit
            unlimited = False
        else:
            remaining, total, unlimited = None, None, True

        expires_at = _expiry(data)
        state = KeyState.OK
        if expires_at is not None and expires_at <= ctx.now:
            state = KeyState.EXPIRED
        elif remaining is not None and remaining <= 0:
            state = KeyState.EXHAUSTED
        elif daily_limit is not None and daily_cost is not None and daily_cost >= daily_limit:
            state = KeyState.EXHAUSTED  # until the day turns
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            total=total,
            used=current_total,
            unlimited=unlimited,
            expires_at=expires_at,
            state=state,
            extras=extras,
            fetched_at=ctx.now,
            windows=_windows(limits),
        )

    def _refusal(self, ctx: FetchContext, reply: HttpReply) -> BalanceResult:
        if reply.status in (400, 401, 403):
            message = _message(reply)
            state = state_from_message(message)
            if state is KeyState.EXPIRED:
                return BalanceResult(
                    provider=self.id,
                    kind=FigureKind.BALANCE,
                    currency="USD",
                    state=state,
                    extras={"source": "refusal"},
                    fetched_at=ctx.now,
                )
            raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {reply.status}", status=reply.status)
        reply.raise_for_common()
        if reply.status == 404 or reply.looks_html:
            raise BillingError(ErrorKind.NO_BALANCE_API, "no CRS stats here", status=reply.status)
        raise BillingError(ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status)


def _windows(limits: Mapping[str, Any]) -> tuple[Window, ...]:
    """Daily cost, the rate-limit window (cost and requests) and weekly Opus cost."""
    out: list[Window] = []
    daily = _limit(limits.get("dailyCostLimit"))
    if daily is not None:
        used = amount_or_none(limits.get("currentDailyCost"))
        out.append(_window("daily", used, daily, Unit.MONEY, timedelta(days=1), None))
    minutes = amount_or_none(limits.get("rateLimitWindow"))
    if minutes is not None and 0 < minutes <= _MAX_WINDOW_MINUTES:
        period = timedelta(minutes=int(minutes))
        name = _window_name(int(minutes))
        ends = _from_ms(limits.get("windowEndTime"))
        cost_cap = _limit(limits.get("rateLimitCost"))
        if cost_cap is not None:
            used = amount_or_none(limits.get("currentWindowCost"))
            out.append(_window(name, used, cost_cap, Unit.MONEY, period, ends))
        request_cap = _limit(limits.get("rateLimitRequests"))
        if request_cap is not None:
            used = amount_or_none(limits.get("currentWindowRequests"))
            out.append(_window(f"{name} requests", used, request_cap, Unit.REQUESTS, period, ends))
    opus = _limit(limits.get("weeklyOpusCostLimit"))
    if opus is not None:
        used = amount_or_none(limits.get("weeklyOpusCost"))
        out.append(_window("weekly Opus", used, opus, Unit.MONEY, timedelta(days=7), None))
    return tuple(out)


def _window(
    name: str,
    used: Decimal | None,
    limit: Decimal,
    unit: Unit,
    period: timedelta,
    resets_at: datetime | None,
) -> Window:
    full = used is not None and used >= limit
    return window(
        name,
        used=used,
        limit=limit,
        unit=unit,
        currency="USD" if unit is Unit.MONEY else None,
        period=period,
        resets_at=resets_at,
        state=WindowState.EXHAUSTED if full else WindowState.OK,
    )


def _window_name(minutes: int) -> str:
    """ "5h" for 300 minutes, "90m" for 90: the name users know the window by."""
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _from_ms(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return from_unix(amount(value).scaleb(-3))
    except BillingError:
        return None


def _site_root(base_url: str) -> str:
    """People paste the Claude base (`…/api`, `…/claude`) or the OpenAI one (`…/openai`)."""
    root = api_root(base_url)
    for suffix in ("/api", "/claude", "/openai", "/gemini"):
        if root.endswith(suffix):
            return root[: -len(suffix)]
    return root


def _limit(value: Any) -> Decimal | None:
    """A configured limit, or None for "no limit" (CRS stores 0)."""
    amount = amount_or_none(value)
    return amount if amount is not None and amount > 0 else None


def _expiry(data: Mapping[str, Any]) -> datetime | None:
    """`expiresAt` counts only once an activation-mode key has been activated."""
    if data.get("expirationMode") == "activation" and data.get("isActivated") is not True:
        return None
    raw = data.get("expiresAt")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return from_iso(raw)
    except BillingError:
        return None


def _message(reply: HttpReply) -> str:
    payload = None if reply.looks_html else reply.json_or_none()
    if not isinstance(payload, dict):
        return ""
    parts = [payload.get("message"), payload.get("error")]
    return " ".join(p for p in parts if isinstance(p, str))[:300]


PROVIDER = CRSProvider()
