"""OpenRouter: `GET /v1/key` (base `https://openrouter.ai/api`) — this key's limit and usage.

docs/providers.md §openrouter. `limit: null` means the key has no spending limit: then the key
says nothing about money left (that is the account balance), so the result is `unlimited`
with no remaining/total. `/v1/credits` is never called for ordinary keys: it needs a
management key and answers other keys with 403 or, worse, HTTP 200 with zeros.

Management keys (`/v1/key` says `is_management_key: true`) can read the account via
`/v1/credits`; that reply is used only when it carries both figures, and if the endpoint
refuses the key (401/403) the per-key result is returned instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState, Unit, Window, WindowState
from bot.billing.providers._parse import (
    api_root,
    from_iso,
    json_object,
    plain,
    raise_for_status,
    to_decimal,
    window,
)
from bot.billing.providers.base import FetchContext, HttpReply, Match, Provider

#: `limit_reset` → the usage field that counts against the limit in the current period.
_PERIOD_USAGE = {"daily": "usage_daily", "weekly": "usage_weekly", "monthly": "usage_monthly"}


class OpenRouterProvider(Provider):
    id = "openrouter"
    title = "OpenRouter"
    hint = "OpenRouter (openrouter.ai)"
    kind = FigureKind.BALANCE
    default_base_url = "https://openrouter.ai/api"
    order = 50
    billing_url = "https://openrouter.ai/settings/credits"

    def detect(self, key: str) -> Match:
        if key.startswith("sk-or-v1-"):
            return Match.CERTAIN
        return Match.POSSIBLE if key.startswith("sk-or-") else Match.NO

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        base = _api_base(ctx.base_url)
        reply = await ctx.http.get(f"{base}/v1/key", headers=ctx.bearer())
        data = _data(reply)
        result = self._key_result(data, ctx)
        if data.get("is_management_key") is True:
            return await self._account_result(ctx, base, fallback=result)
        return result

    def _key_result(self, data: Mapping[str, Any], ctx: FetchContext) -> BalanceResult:
        if "limit" not in data:
            raise BillingError(ErrorKind.MALFORMED, "no limit field")
        extras: dict[str, Any] = {}
        if isinstance(data.get("is_free_tier"), bool):
            extras["free_tier"] = data["is_free_tier"]
        all_time = _optional(data.get("usage"))
        if all_time is not None:
            extras["usage_all_time"] = plain(all_time)

        unlimited = data["limit"] is None
        total = None if unlimited else to_decimal(data["limit"])
        remaining = None if unlimited else _optional(data.get("limit_remaining"))
        reset = data.get("limit_reset")
        windows: tuple[Window, ...] = ()
        if not unlimited and isinstance(reset, str) and reset in _PERIOD_USAGE:
            # The limit renews every period: "used" must be the period's usage to match it.
            extras["limit_reset"] = reset
            used = _optional(data.get(_PERIOD_USAGE[reset]))
            windows = (_limit_window(reset, used, total, ctx.now),)
        else:
            used = all_time

        expires_at = from_iso(data.get("expires_at"))
        state = KeyState.OK
        if expires_at is not None and expires_at <= ctx.now:
            state = KeyState.EXPIRED
        elif remaining is not None and remaining <= 0:
            state = KeyState.EXHAUSTED
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            total=total,
            used=used,
            unlimited=unlimited,
            expires_at=expires_at,
            state=state,
            extras=extras,
            fetched_at=ctx.now,
            windows=windows,
        )

    async def _account_result(
        self, ctx: FetchContext, base: str, *, fallback: BalanceResult
    ) -> BalanceResult:
        """Management key: the account's credits. Zeros are trusted only from this key type."""
        reply = await ctx.http.get(f"{base}/v1/credits", headers=ctx.bearer())
        if reply.status in (401, 403):
            return _with_extras(fallback, {"scope": "key"})
        data = _data(reply)
        if data.get("total_credits") is None or data.get("total_usage") is None:
            raise BillingError(ErrorKind.MALFORMED, "credits without totals")
        total = to_decimal(data["total_credits"])
        used = to_decimal(data["total_usage"])
        remaining = total - used
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=remaining,
            total=total,
            used=used,
            expires_at=fallback.expires_at,
            state=KeyState.EXHAUSTED if remaining <= 0 else KeyState.OK,
            extras={"scope": "account", "management_key": True},
            fetched_at=ctx.now,
        )


def _limit_window(reset: str, used: Decimal | None, limit: Decimal | None, now: datetime) -> Window:
    """The key's renewing limit as a window. OpenRouter resets "automatically at midnight
    UTC, and weeks are Monday through Sunday" (SDK docs, CreateKeysLimitReset); a monthly
    limit is taken to renew on the 1st (calendar month, UTC)."""
    today = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    if reset == "daily":
        start, end = today, today + timedelta(days=1)
    elif reset == "weekly":
        start = today - timedelta(days=today.weekday())
        end = start + timedelta(days=7)
    else:
        start = today.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    full = used is not None and limit is not None and used >= limit
    return window(
        reset,
        used=used,
        limit=limit,
        unit=Unit.MONEY,
        currency="USD",
        resets_at=end,
        period=end - start,
        state=WindowState.EXHAUSTED if full else WindowState.OK,
    )


def _api_base(base_url: str) -> str:
    """`…/api` root: accepts `…/api/v1` (the OpenAI-style base) and bare `openrouter.ai`."""
    root = api_root(base_url)
    parts = urlsplit(root)
    host = (parts.hostname or "").lower()
    if parts.path in ("", "/") and (host == "openrouter.ai" or host.endswith(".openrouter.ai")):
        return f"{root}/api"
    return root


def _data(reply: HttpReply) -> Mapping[str, Any]:
    """`data` of an OpenRouter reply; `{"error": {"code": N}}` (any HTTP status) is mapped."""
    raise_for_status(reply)
    body = json_object(reply)
    error = body.get("error")
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        if code in (401, 403):
            raise BillingError(ErrorKind.KEY_REJECTED, "auth error in HTTP 200 body", status=200)
        if code == 429:
            raise BillingError(ErrorKind.RATE_LIMITED, "rate limit in HTTP 200 body", status=200)
        raise BillingError(ErrorKind.PROVIDER_ERROR, "error body in HTTP 200", status=200)
    data = body.get("data")
    if not isinstance(data, dict):
        raise BillingError(ErrorKind.MALFORMED, "no data object")
    return data


def _optional(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _with_extras(result: BalanceResult, more: Mapping[str, Any]) -> BalanceResult:
    return replace(result, extras={**result.extras, **more})


PROVIDER = OpenRouterProvider()
